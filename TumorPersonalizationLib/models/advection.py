"""Conservative transport of voxel fields (tumor density, tissue maps) by a displacement increment.

    dq/dt + div(q v) = 0,      v = du/dt,

discretised in flux form with first-order upwinding (donor cell): the amount crossing a face is the face's
normal displacement increment (the mean of its two voxels', in voxel lengths) times the value of the voxel it
leaves. Every face's flux is computed once per side from the same operands in the same order, so what leaves one
voxel enters its neighbour exactly: the sum of each field is conserved up to float rounding. Faces with a voxel
outside the body carry nothing (v = 0 and no tissue at the brain's boundary). The increment is applied in
``n`` equal sub-steps, with ``n`` chosen so that no voxel sends out more than ``cfl`` of its content per sub-step
(the CFL rule; with cfl <= 1 the fields stay non-negative).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _face_courant(du_left, du_right, left_in, right_in, inv_h):
    """Signed fraction of a voxel that crosses the face from left to right (0 if either side is not in the body)."""
    return 0.5 * (du_left + du_right) * inv_h if (left_in and right_in) else 0.0


@njit(inline="always")
def _upwind(courant, q_left, q_right):
    return courant * (q_left if courant > 0.0 else q_right)


@njit(parallel=True, cache=True)
def _max_outflow(du, body, inv_h, scale):
    """Largest sum over a voxel's faces of the outgoing Courant numbers, for the increment ``scale * du``."""
    n0, n1, n2 = body.shape
    per_plane = np.zeros(n0)
    for i in prange(1, n0 - 1):
        worst = 0.0
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                if not body[i, j, k]:
                    continue
                out = 0.0
                out += max(0.0, _face_courant(du[0, i, j, k], du[0, i + 1, j, k], True, body[i + 1, j, k],
                                              inv_h[0]))
                out += max(0.0, -_face_courant(du[0, i - 1, j, k], du[0, i, j, k], body[i - 1, j, k], True,
                                               inv_h[0]))
                out += max(0.0, _face_courant(du[1, i, j, k], du[1, i, j + 1, k], True, body[i, j + 1, k],
                                              inv_h[1]))
                out += max(0.0, -_face_courant(du[1, i, j - 1, k], du[1, i, j, k], body[i, j - 1, k], True,
                                               inv_h[1]))
                out += max(0.0, _face_courant(du[2, i, j, k], du[2, i, j, k + 1], True, body[i, j, k + 1],
                                              inv_h[2]))
                out += max(0.0, -_face_courant(du[2, i, j, k - 1], du[2, i, j, k], body[i, j, k - 1], True,
                                               inv_h[2]))
                worst = max(worst, out)
        per_plane[i] = worst
    return per_plane.max() * scale


@njit(parallel=True, cache=True)
def _transport(q, du, body, inv_h, scale, out):
    """out[f] = q[f] - (net outflow of field f) for one sub-step of ``scale * du``. q, out: (F, n0, n1, n2)."""
    n_fields = q.shape[0]
    n0, n1, n2 = body.shape
    for i in prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                if not body[i, j, k]:
                    for f in range(n_fields):
                        out[f, i, j, k] = q[f, i, j, k]
                    continue
                # The six faces' Courant numbers, each oriented from the lower to the higher index.
                cxm = scale * _face_courant(du[0, i - 1, j, k], du[0, i, j, k], body[i - 1, j, k], True, inv_h[0])
                cxp = scale * _face_courant(du[0, i, j, k], du[0, i + 1, j, k], True, body[i + 1, j, k], inv_h[0])
                cym = scale * _face_courant(du[1, i, j - 1, k], du[1, i, j, k], body[i, j - 1, k], True, inv_h[1])
                cyp = scale * _face_courant(du[1, i, j, k], du[1, i, j + 1, k], True, body[i, j + 1, k], inv_h[1])
                czm = scale * _face_courant(du[2, i, j, k - 1], du[2, i, j, k], body[i, j, k - 1], True, inv_h[2])
                czp = scale * _face_courant(du[2, i, j, k], du[2, i, j, k + 1], True, body[i, j, k + 1], inv_h[2])
                for f in range(n_fields):
                    v = q[f, i, j, k]
                    net = (_upwind(cxp, v, q[f, i + 1, j, k]) - _upwind(cxm, q[f, i - 1, j, k], v)
                           + _upwind(cyp, v, q[f, i, j + 1, k]) - _upwind(cym, q[f, i, j - 1, k], v)
                           + _upwind(czp, v, q[f, i, j, k + 1]) - _upwind(czm, q[f, i, j, k - 1], v))
                    out[f, i, j, k] = v - net


def substeps_for(du: np.ndarray, body: np.ndarray, spacing_mm, cfl: float = 0.5) -> int:
    """Number of equal sub-steps that keep every voxel's outflow per sub-step at most ``cfl`` of its content."""
    inv_h = 1.0 / np.asarray(spacing_mm, dtype=np.float64)
    worst = _max_outflow(np.asarray(du, dtype=np.float64), body, inv_h, 1.0)
    return max(1, math.ceil(worst / cfl))


def advect(fields: np.ndarray, du: np.ndarray, body: np.ndarray, spacing_mm, cfl: float = 0.5) -> int:
    """Move ``fields`` in place by the displacement increment ``du``, conservatively; returns the sub-step count.

    Parameters
    ----------
    fields : np.ndarray, float32 or float64, shape (F, n0, n1, n2)
        Densities per voxel (tumor density, tissue probabilities); modified in place.
    du : np.ndarray, shape (3, n0, n1, n2)
        Displacement increment in mm along the array axes, at voxel centres.
    body : np.ndarray of bool, shape (n0, n1, n2)
        Voxels that may move; no body voxel may touch the array's edge.
    spacing_mm : sequence of 3 float
    cfl : float
        Largest fraction of a voxel's content that may leave it in one sub-step (<= 1).
    """
    du = np.asarray(du, dtype=np.float64)
    inv_h = 1.0 / np.asarray(spacing_mm, dtype=np.float64)
    n = substeps_for(du, body, spacing_mm, cfl)
    scratch = fields.copy()  # the kernel leaves the one-voxel rim alone: both buffers must hold it
    source, target = fields, scratch
    for _ in range(n):
        _transport(source, du, body, inv_h, 1.0 / n, target)
        source, target = target, source
    if source is not fields:
        fields[...] = source
    return n
