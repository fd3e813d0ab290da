"""Numba kernels of the Fisher-Kolmogorov solver: one pass over a box of the grid each.

Every kernel works on the half-open box ``lo[d] <= index < hi[d]`` of float32 arrays that carry at least one voxel
of zero diffusivity around the box (the caller pads), so no bounds checks are needed. Each kernel is compiled twice:
``PARALLEL`` (threads over the first axis, for one large simulation) and ``SERIAL`` (GIL released, for running
several simulations side by side in threads).

The diffusion operator, per voxel ``p`` with diffusivity ``d_p`` (0 outside the domain), is

    L(c)_p = sum over the 6 faces f=(p,q):  w_axis * 0.5 * (d_p + d_q) * (c_q - c_p)   if d_p > 0 and d_q > 0, else 0

with ``w_axis = Dw / h_axis^2``: a face with a non-domain voxel on either side carries no flux, so mass is conserved
exactly (up to float rounding) and no tumor enters a voxel that cannot be reached through WM/GM.
"""
import types

import numpy as np
from numba import njit, prange, uint64

# Values below this are set to exactly 0: keeps float32 subnormals (100x slower on x86) out of the arithmetic.
FLUSH_BELOW = np.float32(1e-30)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_U1 = uint64(1)

# Indices are unsigned on purpose: with signed indices numba must handle Python's negative-index wraparound, which
# stops LLVM from vectorising the inner loop (measured: 8x slower).


def _face_sum(dp, cp, d1, c1, d2, c2, d3, c3, d4, c4, d5, c5, d6, c6, wx, wy, wz):
    """L(c) at a voxel from its own and its six neighbours' diffusivity and density (-i, +i, -j, +j, -k, +k).

    Selects rather than branches, so the loops that call it vectorise.
    """
    fx = (((dp + d1) * (c1 - cp)) if d1 > _ZERO else _ZERO) + (((dp + d2) * (c2 - cp)) if d2 > _ZERO else _ZERO)
    fy = (((dp + d3) * (c3 - cp)) if d3 > _ZERO else _ZERO) + (((dp + d4) * (c4 - cp)) if d4 > _ZERO else _ZERO)
    fz = (((dp + d5) * (c5 - cp)) if d5 > _ZERO else _ZERO) + (((dp + d6) * (c6 - cp)) if d6 > _ZERO else _ZERO)
    return (np.float32(0.5) * (wx * fx + wy * fy + wz * fz)) if dp > _ZERO else _ZERO


def _flux_divergence(c, d, i, j, k, wx, wy, wz):
    """L(c) at voxel (i, j, k)."""
    return _face_sum(d[i, j, k], c[i, j, k],
                     d[i - _U1, j, k], c[i - _U1, j, k], d[i + _U1, j, k], c[i + _U1, j, k],
                     d[i, j - _U1, k], c[i, j - _U1, k], d[i, j + _U1, k], c[i, j + _U1, k],
                     d[i, j, k - _U1], c[i, j, k - _U1], d[i, j, k + _U1], c[i, j, k + _U1], wx, wy, wz)


def _flush(v):
    return v if abs(v) >= FLUSH_BELOW else _ZERO


def _logistic_value(c, growth, gm1):
    return c * growth / (_ONE + c * gm1)


def _react_laplacian_first_stage(c, growth, d, wx, wy, wz, mu1_dt, y0, ly0, y1, lo, hi):
    """y0 = logistic(c); ly0 = L(y0); y1 = y0 + mu1_dt * ly0 (first RKL2 stage), in one pass.

    The logistic values of the six neighbours are recomputed rather than read from a first pass: the divisions
    are cheaper than another sweep through memory.
    """
    gm1 = growth - _ONE
    j0, j1, k0, k1 = uint64(lo[1]), uint64(hi[1]), uint64(lo[2]), uint64(hi[2])
    for ii in prange(lo[0], hi[0]):
        i = uint64(ii)
        for j in range(j0, j1):
            for k in range(k0, k1):
                cp = _logistic_value(c[i, j, k], growth, gm1)
                lv = _face_sum(d[i, j, k], cp,
                               d[i - _U1, j, k], _logistic_value(c[i - _U1, j, k], growth, gm1),
                               d[i + _U1, j, k], _logistic_value(c[i + _U1, j, k], growth, gm1),
                               d[i, j - _U1, k], _logistic_value(c[i, j - _U1, k], growth, gm1),
                               d[i, j + _U1, k], _logistic_value(c[i, j + _U1, k], growth, gm1),
                               d[i, j, k - _U1], _logistic_value(c[i, j, k - _U1], growth, gm1),
                               d[i, j, k + _U1], _logistic_value(c[i, j, k + _U1], growth, gm1), wx, wy, wz)
                cp = _flush(cp)
                y0[i, j, k] = cp
                ly0[i, j, k] = lv
                y1[i, j, k] = _flush(cp + mu1_dt * lv)


def _rkl2_stage(y_prev, y_prev2, y0, ly0, d, wx, wy, wz, mu, nu, mu_dt, gamma_dt, out, lo, hi):
    """One RKL2 stage, written as increments from y0 so the weights sum to one exactly (no mass drift)."""
    j0, j1, k0, k1 = uint64(lo[1]), uint64(hi[1]), uint64(lo[2]), uint64(hi[2])
    for ii in prange(lo[0], hi[0]):
        i = uint64(ii)
        for j in range(j0, j1):
            for k in range(k0, k1):
                base = y0[i, j, k]
                lv = _flux_divergence(y_prev, d, i, j, k, wx, wy, wz)
                v = (base + mu * (y_prev[i, j, k] - base) + nu * (y_prev2[i, j, k] - base)
                     + mu_dt * lv + gamma_dt * ly0[i, j, k])
                out[i, j, k] = _flush(v)


def _logistic_final(src, c, growth, eps, lo, hi, plane_change, plane_box):
    """c = logistic(src); per first-axis plane: max |c_new - c_old| and the box of voxels with c_new > eps.

    ``plane_box[i] = (jmin, jmax, kmin, kmax)``, or jmin = -1 when the plane has no such voxel.
    """
    gm1 = growth - _ONE
    j0, j1, k0, k1 = uint64(lo[1]), uint64(hi[1]), uint64(lo[2]), uint64(hi[2])
    for ii in prange(lo[0], hi[0]):
        i = uint64(ii)
        change = _ZERO
        jmin, jmax, kmin, kmax = -1, -1, 1 << 30, -1
        for j in range(j0, j1):
            row_kmin, row_kmax = 1 << 30, -1
            for k in range(k0, k1):
                s = src[i, j, k]
                v = _flush(s * growth / (_ONE + s * gm1))
                change = max(change, abs(v - c[i, j, k]))
                c[i, j, k] = v
                if v > eps:
                    row_kmin = min(row_kmin, int(k))
                    row_kmax = max(row_kmax, int(k))
            if row_kmax >= 0:
                if jmin < 0:
                    jmin = int(j)
                jmax = int(j)
                kmin = min(kmin, row_kmin)
                kmax = max(kmax, row_kmax)
        plane_change[i] = change
        plane_box[i, 0] = jmin
        plane_box[i, 1] = jmax
        plane_box[i, 2] = kmin
        plane_box[i, 3] = kmax


def _rk4_rate(c, d, wx, wy, wz, rho, out_rate, lo, hi):
    """Full right-hand side (diffusion + logistic reaction), for the unsplit fine-step reference integrator."""
    j0, j1, k0, k1 = uint64(lo[1]), uint64(hi[1]), uint64(lo[2]), uint64(hi[2])
    for ii in prange(lo[0], hi[0]):
        i = uint64(ii)
        for j in range(j0, j1):
            for k in range(k0, k1):
                v = c[i, j, k]
                out_rate[i, j, k] = _flux_divergence(c, d, i, j, k, wx, wy, wz) + rho * v * (1.0 - v)


_inline = njit(inline="always")
_face_sum = _inline(_face_sum)
_flux_divergence = _inline(_flux_divergence)
_flush = _inline(_flush)
_logistic_value = _inline(_logistic_value)

_KERNELS = {
    "react_laplacian_first_stage": _react_laplacian_first_stage,
    "rkl2_stage": _rkl2_stage,
    "logistic_final": _logistic_final,
    "rk4_rate": _rk4_rate,
}


def _renamed_copy(fn, suffix: str):
    """A copy of ``fn`` with its own qualified name, so numba's on-disk cache keeps the variants apart."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    return copy


class _KernelSet:
    def __init__(self, parallel: bool):
        for name, fn in _KERNELS.items():
            # No fastmath: with it, the code numba compiles in the process and the same code loaded from its on-disk
            # cache gave densities ~1e-6 apart, so a tool's first run differed from every later one. Without it the
            # two agree bit for bit at the same speed (bench/forward.py: every case within noise, 2 cores).
            if parallel:
                compiled = njit(parallel=True, cache=True)(_renamed_copy(fn, "_parallel"))
            else:
                compiled = njit(nogil=True, cache=True)(_renamed_copy(fn, "_serial"))
            setattr(self, name, compiled)


PARALLEL = _KernelSet(parallel=True)
SERIAL = _KernelSet(parallel=False)
