"""Quasi-static linear elasticity on a voxel grid: the displacement that a tumor's load produces.

    -div( lambda (div u) I + mu (grad u + grad u^T) ) = -gamma grad c      in the elastic body,
    u = 0                                                                   outside it,

lambda and mu (Pa) per voxel, c (dimensionless) per voxel, gamma in Pa, lengths in mm, so u is in mm.

Discretisation (why it is SPD): u, lambda, mu and c live at voxel centres. The terms d/dx_i(a du_i/dx_i) with
a = lambda + 2 mu and d/dx_j(mu du_i/dx_j) use compact differences across faces with the arithmetic mean of the two
voxels' coefficients (a voxel outside the body lends the inside voxel's value, which puts the wall about one voxel
beyond the last body voxel's centre); the mixed terms d/dx_i(lambda du_j/dx_j) and d/dx_j(mu du_j/dx_i) use
centred differences. The mixed blocks are then transposes of each other, and since a centred difference squared is
at most the mean of the two compact ones squared, u^T A u >= the (non-negative) elastic energy written with centred
differences: the matrix is symmetric positive definite and conjugate gradients apply. The load is the transpose
of the centred divergence applied to gamma c, so the discrete problem minimises the discrete energy
E(u) - sum gamma c div(u), as the continuous one does.

Solver: conjugate gradients, matrix-free (a numba stencil), preconditioned by the exact inverse of the
constant-coefficient operator on the periodic box, applied with real FFTs (the symbol is a diagonal plus a rank-one
3x3 matrix per wavenumber, inverted by Sherman-Morrison) in single precision. This is the preconditioner family
Subramanian et al. (2019) use for the same equations; here it is built for the discrete operator above, so it is
exact away from the body's boundary and its coefficient jumps. :class:`Coarsening` moves the problem to a coarser
grid and back (the model solves there by default).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
from numba import njit, prange

from ..errors import InputError
from ..execution import available_cpus

POISSON_MAX = 0.49
"""Poisson ratios are limited to [0, 0.49]: at 0.5 lambda is infinite (incompressible) and a voxel grid locks."""
YOUNG_RANGE_PA = (1.0, 1.0e6)
"""Young's moduli outside this range (Pa) are refused: brain tissue is ~0.1-20 kPa, so a value outside is a unit
mistake (kPa or MPa given as Pa)."""


SERIAL_BELOW_VOXELS = 300_000
"""Grids smaller than this run on one thread: a sweep takes a few milliseconds, and waking threads for it costs
more than it saves (much more when other processes keep the cores busy; measured 10x on a loaded 2-core machine)."""


def threads_for(n_voxels: int) -> int:
    """Threads worth using for sweeps over ``n_voxels`` voxels (see :data:`SERIAL_BELOW_VOXELS`)."""
    return 1 if n_voxels < SERIAL_BELOW_VOXELS else available_cpus()


@contextmanager
def numba_threads(n: int):
    """Run numba's parallel loops (and this module's FFTs) on ``n`` threads inside the block."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def lame_from_young(young_pa: float, poisson: float) -> tuple[float, float]:
    """Lame coefficients (lambda, mu) in Pa from Young's modulus E (Pa) and Poisson's ratio nu.

    lambda = E nu / ((1 + nu) (1 - 2 nu)),  mu = E / (2 (1 + nu)).
    """
    return (young_pa * poisson / ((1.0 + poisson) * (1.0 - 2.0 * poisson)), young_pa / (2.0 * (1.0 + poisson)))


def check_material(name: str, young_pa: float, poisson: float) -> None:
    """InputError unless E is within :data:`YOUNG_RANGE_PA` and nu within [0, :data:`POISSON_MAX`]."""
    lo, hi = YOUNG_RANGE_PA
    if not (np.isfinite(young_pa) and lo <= young_pa <= hi):
        raise InputError(f"{name}: Young's modulus {young_pa:g} Pa is outside [{lo:g}, {hi:g}] Pa "
                         f"(brain tissue is ~100-20000 Pa; was it given in kPa?)")
    if not (np.isfinite(poisson) and 0.0 <= poisson <= POISSON_MAX):
        raise InputError(f"{name}: Poisson's ratio {poisson:g} is outside [0, {POISSON_MAX}] "
                         f"(0.5 would be incompressible, which a voxel grid cannot represent)")


# ------------------------------------------------------------------------------------------------ the stencil
@njit(inline="always")
def _face(coef_p, coef_q, q_inside, u_p, u_q):
    """Compact-difference flux term of one face: a voxel outside the body lends the inside voxel's coefficient."""
    return 0.5 * (coef_p + (coef_q if q_inside else coef_p)) * (u_p - u_q)


@njit(inline="always")
def _mixed(lam_cp, lam_cm, mu_dp, mu_dm, upp, upm, ump, umm):
    """lam(p+e_c) (u(p+e_c+e_d) - u(p+e_c-e_d)) - lam(p-e_c) (...) + mu(p+e_d) (...) - mu(p-e_d) (...), for the
    mixed derivatives of component d in the equation of component c (u values of component d)."""
    return lam_cp * (upp - upm) - lam_cm * (ump - umm) + mu_dp * (upp - ump) - mu_dm * (upm - umm)


@njit(parallel=True, fastmath=True, cache=True)
def _apply(u, lam, mu, body, inv_h, out):
    """out = A u on the body (0 elsewhere). u, out: (3, n0, n1, n2); lam, mu: zero outside the body.

    Every body voxel is at least one voxel from the array edge (the caller pads); the rim of ``out`` is not written.
    """
    n0, n1, n2 = body.shape
    ux, uy, uz = u[0], u[1], u[2]
    wx, wy, wz = inv_h[0] ** 2, inv_h[1] ** 2, inv_h[2] ** 2
    wxy, wxz, wyz = 0.25 * inv_h[0] * inv_h[1], 0.25 * inv_h[0] * inv_h[2], 0.25 * inv_h[1] * inv_h[2]
    for i in prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                if not body[i, j, k]:
                    out[0, i, j, k] = 0.0
                    out[1, i, j, k] = 0.0
                    out[2, i, j, k] = 0.0
                    continue
                lp = lam[i, j, k]
                mp = mu[i, j, k]
                ap = lp + 2.0 * mp
                bxm, bxp = body[i - 1, j, k], body[i + 1, j, k]
                bym, byp = body[i, j - 1, k], body[i, j + 1, k]
                bzm, bzp = body[i, j, k - 1], body[i, j, k + 1]
                axm = lam[i - 1, j, k] + 2.0 * mu[i - 1, j, k]
                axp = lam[i + 1, j, k] + 2.0 * mu[i + 1, j, k]
                aym = lam[i, j - 1, k] + 2.0 * mu[i, j - 1, k]
                ayp = lam[i, j + 1, k] + 2.0 * mu[i, j + 1, k]
                azm = lam[i, j, k - 1] + 2.0 * mu[i, j, k - 1]
                azp = lam[i, j, k + 1] + 2.0 * mu[i, j, k + 1]
                mxm, mxp = mu[i - 1, j, k], mu[i + 1, j, k]
                mym, myp = mu[i, j - 1, k], mu[i, j + 1, k]
                mzm, mzp = mu[i, j, k - 1], mu[i, j, k + 1]
                lxm, lxp = lam[i - 1, j, k], lam[i + 1, j, k]
                lym, lyp = lam[i, j - 1, k], lam[i, j + 1, k]
                lzm, lzp = lam[i, j, k - 1], lam[i, j, k + 1]

                # x component: (lam + 2 mu) along x, mu along y and z; mixed with u_y and u_z.
                v = ux[i, j, k]
                acc = wx * (_face(ap, axm, bxm, v, ux[i - 1, j, k]) + _face(ap, axp, bxp, v, ux[i + 1, j, k]))
                acc += wy * (_face(mp, mym, bym, v, ux[i, j - 1, k]) + _face(mp, myp, byp, v, ux[i, j + 1, k]))
                acc += wz * (_face(mp, mzm, bzm, v, ux[i, j, k - 1]) + _face(mp, mzp, bzp, v, ux[i, j, k + 1]))
                acc -= wxy * _mixed(lxp, lxm, myp, mym, uy[i + 1, j + 1, k], uy[i + 1, j - 1, k],
                                    uy[i - 1, j + 1, k], uy[i - 1, j - 1, k])
                acc -= wxz * _mixed(lxp, lxm, mzp, mzm, uz[i + 1, j, k + 1], uz[i + 1, j, k - 1],
                                    uz[i - 1, j, k + 1], uz[i - 1, j, k - 1])
                out[0, i, j, k] = acc

                v = uy[i, j, k]
                acc = wx * (_face(mp, mxm, bxm, v, uy[i - 1, j, k]) + _face(mp, mxp, bxp, v, uy[i + 1, j, k]))
                acc += wy * (_face(ap, aym, bym, v, uy[i, j - 1, k]) + _face(ap, ayp, byp, v, uy[i, j + 1, k]))
                acc += wz * (_face(mp, mzm, bzm, v, uy[i, j, k - 1]) + _face(mp, mzp, bzp, v, uy[i, j, k + 1]))
                acc -= wxy * _mixed(lyp, lym, mxp, mxm, ux[i + 1, j + 1, k], ux[i - 1, j + 1, k],
                                    ux[i + 1, j - 1, k], ux[i - 1, j - 1, k])
                acc -= wyz * _mixed(lyp, lym, mzp, mzm, uz[i, j + 1, k + 1], uz[i, j + 1, k - 1],
                                    uz[i, j - 1, k + 1], uz[i, j - 1, k - 1])
                out[1, i, j, k] = acc

                v = uz[i, j, k]
                acc = wx * (_face(mp, mxm, bxm, v, uz[i - 1, j, k]) + _face(mp, mxp, bxp, v, uz[i + 1, j, k]))
                acc += wy * (_face(mp, mym, bym, v, uz[i, j - 1, k]) + _face(mp, myp, byp, v, uz[i, j + 1, k]))
                acc += wz * (_face(ap, azm, bzm, v, uz[i, j, k - 1]) + _face(ap, azp, bzp, v, uz[i, j, k + 1]))
                acc -= wxz * _mixed(lzp, lzm, mxp, mxm, ux[i + 1, j, k + 1], ux[i - 1, j, k + 1],
                                    ux[i + 1, j, k - 1], ux[i - 1, j, k - 1])
                acc -= wyz * _mixed(lzp, lzm, myp, mym, uy[i, j + 1, k + 1], uy[i, j - 1, k + 1],
                                    uy[i, j + 1, k - 1], uy[i, j - 1, k - 1])
                out[2, i, j, k] = acc


@njit(parallel=True, fastmath=True, cache=True)
def _load(c, body, gamma, inv_h, out):
    """out = -gamma * (centred gradient of c) on the body, 0 elsewhere: the right-hand side."""
    n0, n1, n2 = body.shape
    for i in prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                if body[i, j, k]:
                    out[0, i, j, k] = -gamma * 0.5 * inv_h[0] * (c[i + 1, j, k] - c[i - 1, j, k])
                    out[1, i, j, k] = -gamma * 0.5 * inv_h[1] * (c[i, j + 1, k] - c[i, j - 1, k])
                    out[2, i, j, k] = -gamma * 0.5 * inv_h[2] * (c[i, j, k + 1] - c[i, j, k - 1])
                else:
                    out[0, i, j, k] = 0.0
                    out[1, i, j, k] = 0.0
                    out[2, i, j, k] = 0.0


@njit(parallel=True, fastmath=True, cache=True)
def _sherman_morrison(r0, r1, r2, g0, g1, g2, t0, t1, t2, beta):
    """In place: r <- S^-1 r per wavenumber, S = diag(g) + beta t t^T (1/g = 0 where g = 0)."""
    n0, n1, n2 = r0.shape
    for i in prange(n0):
        for j in range(n1):
            for k in range(n2):
                a0 = g0[i, j, k]
                a1 = g1[i, j, k]
                a2 = g2[i, j, k]
                y0 = r0[i, j, k] * a0
                y1 = r1[i, j, k] * a1
                y2 = r2[i, j, k] * a2
                s0 = t0[i]
                s1 = t1[j]
                s2 = t2[k]
                dot = s0 * y0 + s1 * y1 + s2 * y2
                den = 1.0 + beta * (s0 * s0 * a0 + s1 * s1 * a1 + s2 * s2 * a2)
                f = beta * dot / den
                r0[i, j, k] = y0 - f * s0 * a0
                r1[i, j, k] = y1 - f * s1 * a1
                r2[i, j, k] = y2 - f * s2 * a2


@njit(parallel=True, fastmath=True, cache=True)
def _dot(a, b):
    """sum(a * b) over (3, n0, n1, n2) arrays (numba, so no BLAS threads compete with the stencil's)."""
    total = 0.0
    for i in prange(a.shape[1]):
        for c in range(3):
            for j in range(a.shape[2]):
                for k in range(a.shape[3]):
                    total += a[c, i, j, k] * b[c, i, j, k]
    return total


@njit(parallel=True, fastmath=True, cache=True)
def _cg_update(u, r, p, ap, alpha):
    """u += alpha p; r -= alpha A p; return r . r (one pass)."""
    total = 0.0
    for i in prange(u.shape[1]):
        for c in range(3):
            for j in range(u.shape[2]):
                for k in range(u.shape[3]):
                    u[c, i, j, k] += alpha * p[c, i, j, k]
                    v = r[c, i, j, k] - alpha * ap[c, i, j, k]
                    r[c, i, j, k] = v
                    total += v * v
    return total


@njit(parallel=True, fastmath=True, cache=True)
def _cg_direction(p, z, beta):
    """p = z + beta p."""
    for i in prange(p.shape[1]):
        for c in range(3):
            for j in range(p.shape[2]):
                for k in range(p.shape[3]):
                    p[c, i, j, k] = z[c, i, j, k] + beta * p[c, i, j, k]


# ------------------------------------------------------------------------------------------------ the solver
@dataclass(frozen=True)
class SolverSettings:
    """Controls of the conjugate-gradient solve.

    Attributes
    ----------
    tolerance : float
        Stop when ||A u - b|| <= tolerance * ||b||.
    max_iterations : int
        Give up (and keep the last iterate) after this many iterations.
    """

    tolerance: float = 1e-3
    max_iterations: int = 300


@dataclass
class SolveReport:
    """What one solve did: ``iterations``, the final ``relative_residual`` and ``seconds``."""

    iterations: int
    relative_residual: float
    seconds: float


def _good_fft_size(n: int) -> int:
    return scipy.fft.next_fast_len(int(n), real=True)


class ElasticBody:
    """The elastic body (a voxel mask) on a padded grid, with the FFT preconditioner prepared once.

    Parameters
    ----------
    body : array_like of bool, shape (n0, n1, n2)
        Voxels that deform; u = 0 on every other voxel. No body voxel may touch the array's edge.
    spacing_mm : sequence of 3 float
    reference_lame_pa : (float, float)
        (lambda, mu) of the constant-coefficient operator whose inverse preconditions CG; a typical value of the
        body's coefficients (the solution does not depend on it, the iteration count does).
    """

    def __init__(self, body, spacing_mm, reference_lame_pa):
        body = np.asarray(body, dtype=bool)
        if body.ndim != 3:
            raise InputError(f"elastic body: expected a 3D mask, got shape {body.shape}")
        if body[0].any() or body[-1].any() or body[:, 0].any() or body[:, -1].any() or body[:, :, 0].any() \
                or body[:, :, -1].any():
            raise InputError("elastic body: the mask touches the array edge; pad it by one voxel")
        self.body = body
        self.shape = body.shape
        self.spacing_mm = np.asarray(spacing_mm, dtype=np.float64)
        self.inv_h = 1.0 / self.spacing_mm
        self._prepare_preconditioner(*reference_lame_pa)

    def _prepare_preconditioner(self, lam: float, mu: float) -> None:
        # Pad to FFT-friendly sizes; the body stays clear of the periodic wrap because it does not touch the edge.
        self.fft_shape = tuple(_good_fft_size(n) for n in self.shape)
        s2, t = [], []
        for axis, (n, h) in enumerate(zip(self.fft_shape, self.spacing_mm)):
            m = n // 2 + 1 if axis == 2 else n
            k = 2.0 * np.pi * np.arange(m) / n if axis == 2 else 2.0 * np.pi * np.fft.fftfreq(n)
            s2.append(4.0 * np.sin(k / 2.0) ** 2 / h ** 2)  # symbol of the compact second difference
            t.append(np.sin(k) / h)  # of the centred first difference (times -i)
        grid = np.meshgrid(*s2, indexing="ij", sparse=True)
        tgrid = np.meshgrid(*t, indexing="ij", sparse=True)
        laplace = grid[0] + grid[1] + grid[2]
        beta = lam + mu
        inverse = []
        for axis in range(3):
            g = mu * laplace + beta * (grid[axis] - tgrid[axis] ** 2)
            with np.errstate(divide="ignore"):
                inverse.append(np.where(g > 0, 1.0 / np.where(g > 0, g, 1.0), 0.0).astype(np.float32))
        self._g_inverse = inverse
        self._t = [np.ascontiguousarray(v, dtype=np.float32) for v in t]
        self._beta = np.float32(beta)

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """z = P r: the periodic constant-coefficient inverse, masked to the body. r: (3, n0, n1, n2) float64.

        In single precision: a preconditioner only has to be a fixed SPD operator, and float32 halves the FFTs.
        """
        workers = numba.get_num_threads()
        spectra = scipy.fft.rfftn(r.astype(np.float32), s=self.fft_shape, axes=(1, 2, 3), workers=workers)
        _sherman_morrison(spectra[0], spectra[1], spectra[2], *self._g_inverse, *self._t, self._beta)
        z = scipy.fft.irfftn(spectra, s=self.fft_shape, axes=(1, 2, 3), workers=workers)
        return np.where(self.body, z[(slice(None),) + tuple(slice(0, n) for n in self.shape)], 0.0)

    def apply(self, u: np.ndarray, lam: np.ndarray, mu: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A u for coefficient fields ``lam``, ``mu`` (Pa, zero outside the body)."""
        out = np.zeros_like(u) if out is None else out
        _apply(u, lam, mu, self.body, self.inv_h, out)
        return out

    def load(self, c: np.ndarray, gamma_pa: float) -> np.ndarray:
        """The right-hand side -gamma grad c on the body, shape (3, n0, n1, n2) float64."""
        out = np.zeros((3,) + self.shape, dtype=np.float64)
        _load(np.asarray(c, dtype=np.float64), self.body, float(gamma_pa), self.inv_h, out)
        return out

    def solve(self, lam: np.ndarray, mu: np.ndarray, rhs: np.ndarray, initial: np.ndarray | None = None,
              settings: SolverSettings = SolverSettings()) -> tuple[np.ndarray, SolveReport]:
        """Preconditioned CG for A u = rhs.

        Parameters
        ----------
        lam, mu : np.ndarray, float64, shape (n0, n1, n2)
            Lame coefficients (Pa); values outside the body are ignored (set to 0 here).
        rhs : np.ndarray, float64, shape (3, n0, n1, n2)
        initial : np.ndarray, optional
            Starting guess (e.g. the previous time step's displacement).

        Returns
        -------
        u : np.ndarray, float64, shape (3, n0, n1, n2)
            Displacement in mm along the array axes; 0 outside the body.
        report : SolveReport
        """
        with numba_threads(threads_for(self.body.size)):
            return self._solve(lam, mu, rhs, initial, settings)

    def _solve(self, lam, mu, rhs, initial, settings):
        started = time.perf_counter()
        lam = np.where(self.body, lam, 0.0).astype(np.float64)
        mu = np.where(self.body, mu, 0.0).astype(np.float64)
        b_norm = math.sqrt(_dot(rhs, rhs))
        if b_norm == 0.0:
            return np.zeros_like(rhs), SolveReport(0, 0.0, time.perf_counter() - started)
        u = np.zeros_like(rhs) if initial is None else initial * self.body
        r = rhs - self.apply(u, lam, mu)
        z = self.precondition(r)
        p = z.copy()
        rz = _dot(r, z)
        ap = np.zeros_like(u)  # the stencil leaves the one-voxel rim untouched
        residual = math.sqrt(_dot(r, r)) / b_norm
        iterations = 0
        while residual > settings.tolerance and iterations < settings.max_iterations:
            self.apply(p, lam, mu, ap)
            alpha = rz / _dot(p, ap)
            residual = math.sqrt(_cg_update(u, r, p, ap, alpha)) / b_norm
            iterations += 1
            if residual <= settings.tolerance:
                break
            z = self.precondition(r)
            rz_new = _dot(r, z)
            _cg_direction(p, z, rz_new / rz)
            rz = rz_new
        return u, SolveReport(iterations, residual, time.perf_counter() - started)


class Coarsening:
    """Block averaging to a grid ``factor`` times coarser, and trilinear interpolation back.

    The displacement is smooth (an elliptic solve of a smooth load), so solving for it on a coarser grid and
    interpolating costs little accuracy and ``factor**3`` less work. Coarse cell I (after a one-cell pad) covers
    fine cells ``factor * (I - 1)`` to ``factor * I - 1`` of each axis.

    Parameters
    ----------
    fine_body : np.ndarray of bool, shape (n0, n1, n2)
    factor : int >= 1
    """

    def __init__(self, fine_body: np.ndarray, factor: int):
        self.factor = int(factor)
        self.fine_body = np.asarray(fine_body, dtype=bool)
        self.fine_shape = self.fine_body.shape
        self.blocks = tuple(-(-n // self.factor) for n in self.fine_shape)
        self.shape = tuple(b + 2 for b in self.blocks)
        self._body_fraction = self.restrict(self.fine_body.astype(np.float64))
        self.body = self._body_fraction >= 0.5

    def restrict(self, a: np.ndarray) -> np.ndarray:
        """Block means of a fine field (n0, n1, n2), on the padded coarse grid (zeros in the pad), float64."""
        f = self.factor
        padded = np.zeros(tuple(b * f for b in self.blocks))
        padded[tuple(slice(0, n) for n in self.fine_shape)] = a
        means = padded.reshape(self.blocks[0], f, self.blocks[1], f, self.blocks[2], f).mean(axis=(1, 3, 5))
        return np.pad(means, 1)

    def prolong(self, u: np.ndarray) -> np.ndarray:
        """Trilinear interpolation of a coarse field (3, N0, N1, N2) to the fine cell centres, 0 off the body."""
        out = np.zeros((3,) + self.fine_shape)
        _prolong(np.ascontiguousarray(u, dtype=np.float64), self.fine_body, self.factor, out)
        return out


@njit(inline="always")
def _coarse_position(i, factor, n_coarse):
    """Lower coarse neighbour and weight of the upper one for fine index i (coarse cell I has a one-cell pad)."""
    x = (i + 0.5) / factor + 0.5
    lo = min(max(int(math.floor(x)), 0), n_coarse - 2)
    return lo, x - lo


@njit(parallel=True, cache=True)
def _prolong(u, fine_body, factor, out):
    n0, n1, n2 = fine_body.shape
    for i in prange(n0):
        i0, wi = _coarse_position(i, factor, u.shape[1])
        for j in range(n1):
            j0, wj = _coarse_position(j, factor, u.shape[2])
            for k in range(n2):
                if not fine_body[i, j, k]:
                    continue
                k0, wk = _coarse_position(k, factor, u.shape[3])
                for c in range(3):
                    v = 0.0
                    for di in range(2):
                        for dj in range(2):
                            for dk in range(2):
                                w = ((wi if di else 1.0 - wi) * (wj if dj else 1.0 - wj)
                                     * (wk if dk else 1.0 - wk))
                                v += w * u[c, i0 + di, j0 + dj, k0 + dk]
                    out[c, i, j, k] = v


def radial_displacement_closed_form(r_mm, c_of_r, radius_mm: float, gamma_pa: float, lam_pa: float, mu_pa: float,
                                    samples: int = 4001) -> np.ndarray:
    """u_r(r) in a homogeneous ball of radius R with u = 0 on its surface and a radial density c(r):

        u_r(r) = gamma / (lambda + 2 mu) [ (1/r^2) int_0^r c s^2 ds - (r / R^3) int_0^R c s^2 ds ].

    (An irrotational field solves the equations; then (lambda + 2 mu) div u = gamma c + const.)
    """
    s = np.linspace(0.0, radius_mm, samples)
    integrand = c_of_r(s) * s ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(s))])
    r = np.asarray(r_mm, dtype=np.float64)
    inner = np.interp(r, s, cumulative)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = gamma_pa / (lam_pa + 2.0 * mu_pa) * (inner / r ** 2 - r * cumulative[-1] / radius_mm ** 3)
    return np.where(r > 0, u, 0.0)
