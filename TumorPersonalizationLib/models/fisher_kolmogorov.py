"""Fisher-Kolmogorov tumor growth in patient tissue maps.

    dc/dt = div(D grad c) + rho c (1 - c),      D = p_wm Dw + p_gm Dw / ratio,

with no flux through any face that has a voxel with p_wm + p_gm < 0.1 on either side (CSF, background) and no flux
through the array edge. Units: mm, days, Dw in mm^2/day, rho in 1/day.

Numerics (why, in short; the README's "Forward solver" section has the measurements):

- Strang splitting: half a step of the *exact* logistic solution, a diffusion step, half a logistic step. The exact
  logistic step keeps c in [0, 1] and removes the stiffness of the reaction.
- The diffusion step is RKL2 super-time-stepping (Meyer, Balsara and Aslam 2014): an s-stage Runge-Kutta-Legendre
  method, second order, stable for dt up to (s^2 + s - 2) / 4 forward-Euler limits, so the cost grows with sqrt(dt)
  instead of dt.
- The step size follows the solution: each step targets a maximum change of c of ``step_tolerance`` (the front
  crossing a voxel sets it while the tumor grows; once the brain fills up the steps grow to ``max_step_days``).
- Work is restricted to the bounding box of the WM/GM domain, and within it to the box of voxels where c exceeds
  ``active_threshold`` grown by the s voxels that an s-stage step can reach. Float32 with subnormals flushed to 0.

Seed (the initial condition): a smooth ball centred on the seed position, c = 1 within ``seed_radius_mm`` (1.5 mm)
and a cosine taper to 0 over the next ``seed_taper_mm`` (3 mm), masked to the WM/GM domain. Its mass sets the time
origin: a smaller seed needs longer to reach the same size, so T is meaningful only together with this convention.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..execution import available_cpus
from ..validation import unit_interval
from . import _fk_kernels as kernels

DOMAIN_THRESHOLD = 0.1
"""A voxel belongs to the simulation domain when p_wm + p_gm >= this."""


@dataclass(frozen=True)
class StepSettings:
    """Time-stepping controls of :func:`simulate`.

    Attributes
    ----------
    step_tolerance : float
        Target maximum change of c in one step. Smaller is more accurate and slower (error roughly linear in it).
    max_step_days : float
        Upper bound of the step in days.
    first_step_days : float
        The first step (the controller doubles it at most each step).
    active_threshold : float
        Voxels with c below this do not enlarge the box that is computed (values there are left as they are).
    method : {"rkl2", "rk4"}
        "rkl2" is the split solver described in the module docstring; "rk4" integrates reaction and diffusion
        together with classical RK4 at a fixed fraction ``rk4_fraction`` of its stability limit: slow, meant only
        as the fine-step reference that benchmarks and tests compare against.
    """

    step_tolerance: float = 0.15
    max_step_days: float = 100.0
    first_step_days: float = 0.05
    active_threshold: float = 1e-7
    method: str = "rkl2"
    rk4_fraction: float = 0.25


DEFAULT_STEPS = StepSettings()


def _validate_tissue(wm, gm, spacing_mm):
    wm = np.asarray(wm)
    gm = np.asarray(gm)
    if wm.ndim != 3:
        raise InputError(f"wm: expected a 3D array, got shape {wm.shape}")
    if gm.shape != wm.shape:
        raise InputError(f"gm: shape {gm.shape} differs from wm shape {wm.shape}")
    wm = unit_interval(wm, "wm", "probabilities")
    gm = unit_interval(gm, "gm", "probabilities")
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise InputError(f"spacing_mm must be 3 positive numbers, got {spacing_mm}")
    return wm, gm, spacing


def _positive(name, value):
    value = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(value)) or np.any(value <= 0):
        raise InputError(f"{name} must be a positive number, got {value.tolist()}")
    return value


def _ball_volume_mm3(radius_mm: float, taper_mm: float) -> float:
    """Integral of the seed profile (1 inside ``radius_mm``, a cosine taper over ``taper_mm``) over space."""
    r = np.linspace(radius_mm, radius_mm + taper_mm, 2001)
    taper = 0.5 * (1.0 + np.cos(np.pi * (r - radius_mm) / taper_mm))
    return float(4.0 / 3.0 * np.pi * radius_mm ** 3 + np.trapezoid(4.0 * np.pi * r ** 2 * taper, r))


def nearest_voxel(index, shape) -> tuple:
    """The voxel (i, j, k) whose centre is nearest to a continuous index, clipped to a grid of ``shape``."""
    return tuple(int(v) for v in np.clip(np.rint(np.asarray(index, dtype=float)).astype(int), 0,
                                         np.asarray(shape) - 1))


def check_seed_in(inside: np.ndarray, seed_index, name: str = "seed") -> np.ndarray:
    """A continuous voxel index (i, j, k) as float64 (3,), or InputError when it is not finite, lies outside the
    grid of ``inside`` (the domain mask, WM + GM >= DOMAIN_THRESHOLD) or in a voxel outside the domain."""
    seed = np.asarray(seed_index, dtype=np.float64)
    if seed.shape != (3,) or not np.all(np.isfinite(seed)):
        raise InputError(f"{name}: expected 3 finite voxel coordinates, got {seed_index}")
    if np.any(seed < -0.5) or np.any(seed > np.asarray(inside.shape) - 0.5):
        raise InputError(f"{name}: voxel position {np.round(seed, 2).tolist()} lies outside the image "
                         f"of shape {inside.shape}")
    nearest = nearest_voxel(seed, inside.shape)
    if not inside[nearest]:
        raise InputError(f"{name}: voxel {[int(v) for v in nearest]} lies in CSF or background "
                         f"(WM + GM < {DOMAIN_THRESHOLD}); place the seed in white or grey matter")
    return seed


class Domain:
    """Tissue maps prepared for repeated simulations (crop, diffusivity, stability bound).

    Parameters
    ----------
    wm, gm : array_like, shape (ni, nj, nk)
        White- and grey-matter probabilities in [0, 1].
    spacing_mm : sequence of 3 float
        Voxel size along i, j, k in mm.
    ratio : float
        Dw / Dg (10 by default; 100 is the other published choice).
    crop_to : array_like of bool, shape (ni, nj, nk), optional
        Compute on the bounding box of this mask (and the domain) instead of the domain's own box.
    """

    def __init__(self, wm, gm, spacing_mm, ratio: float = 10.0, crop_to=None):
        wm, gm, spacing = _validate_tissue(wm, gm, spacing_mm)
        self.ratio = float(_positive("ratio", ratio))
        self.full_shape = wm.shape
        self.spacing_mm = spacing
        inside = (wm.astype(np.float32) + gm.astype(np.float32)) >= DOMAIN_THRESHOLD
        if not inside.any():
            raise InputError(f"tissue maps: no voxel has WM + GM >= {DOMAIN_THRESHOLD}; nothing to simulate in")
        self.inside = inside
        # The crop is the domain's bounding box, or that of ``crop_to`` (a mask of the full grid containing the
        # domain) for models whose tissue moves beyond the domain's initial box (the mass-effect model).
        extent = inside if crop_to is None else (np.asarray(crop_to, dtype=bool) | inside)
        nz = np.nonzero(extent)
        lo = np.array([a.min() for a in nz])
        hi = np.array([a.max() + 1 for a in nz])
        # One voxel of zero diffusivity all round, so kernels never index outside the array (zero flux at the edge).
        self.crop_lo, self.crop_hi = lo, hi
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        self.set_tissue(np.pad(wm[box], 1), np.pad(gm[box], 1))

    def set_tissue(self, wm_padded: np.ndarray, gm_padded: np.ndarray) -> None:
        """Diffusivity, domain mask and stability bound from WM / GM on the padded crop (the arrays' shape).

        The mass-effect model calls this after each advection of the tissue; the rim of the arrays must be 0.
        """
        inside = (wm_padded.astype(np.float32) + gm_padded.astype(np.float32)) >= DOMAIN_THRESHOLD
        self.inside_padded = inside
        self.diffusivity = np.where(inside, wm_padded + gm_padded / self.ratio, 0.0).astype(np.float32)
        # Gershgorin bound on the largest eigenvalue of -L for Dw = 1: 2 * max_p sum_faces w * (d_p + d_q) / 2.
        d = self.diffusivity
        row = np.zeros_like(d)
        for axis, h in enumerate(self.spacing_mm):
            lo_sl = [slice(None)] * 3
            hi_sl = [slice(None)] * 3
            lo_sl[axis] = slice(0, -1)
            hi_sl[axis] = slice(1, None)
            a, b = d[tuple(lo_sl)], d[tuple(hi_sl)]
            face = np.where((a > 0) & (b > 0), 0.5 * (a + b), 0.0) / h ** 2
            row[tuple(lo_sl)] += face
            row[tuple(hi_sl)] += face
        self.lambda_max_per_dw = float(2.0 * row.max())

    # ----------------------------------------------------------------------------------------------- seeds
    def check_seed(self, seed_index, name: str = "seed") -> np.ndarray:
        """Validate a continuous voxel index (i, j, k) of the full grid; return it as float64 (3,)."""
        return check_seed_in(self.inside, seed_index, name)

    def seed_density(self, seed_index, radius_mm: float = 1.5, taper_mm: float = 3.0) -> np.ndarray:
        """Initial condition on the padded crop (float32): the smooth ball of the module docstring."""
        seed = self.check_seed(seed_index) - (self.crop_lo - 1)
        reach = (radius_mm + taper_mm) / self.spacing_mm
        lo = np.maximum(np.floor(seed - reach).astype(int), 0)
        hi = np.minimum(np.ceil(seed + reach).astype(int) + 1, self.diffusivity.shape)
        axes = [(np.arange(a, b) - s) * h for a, b, s, h in zip(lo, hi, seed, self.spacing_mm)]
        r = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
        ball = np.where(r <= radius_mm, 1.0,
                        np.where(r < radius_mm + taper_mm,
                                 0.5 * (1.0 + np.cos(np.pi * (r - radius_mm) / taper_mm)), 0.0))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        c = np.zeros(self.diffusivity.shape, dtype=np.float32)
        c[box] = np.where(self.inside_padded[box], ball, 0.0)
        if not c.any():
            # On grids coarser than ~5 mm the ball can fall between voxel centres: its volume goes to the nearest
            # voxel (inside the domain, check_seed made sure), so the tumor starts with the same mass.
            c[nearest_voxel(seed, c.shape)] = min(1.0, _ball_volume_mm3(radius_mm, taper_mm)
                                                  / float(np.prod(self.spacing_mm)))
        return c

    def _crop_initial(self, density) -> np.ndarray:
        density = np.asarray(density)
        if density.shape != tuple(self.full_shape):
            raise InputError(f"initial_density: shape {density.shape} differs from the tissue maps' "
                             f"{tuple(self.full_shape)}")
        if not np.all(np.isfinite(density)) or density.min() < 0 or density.max() > 1:
            raise InputError("initial_density: values must be finite and in [0, 1]")
        box = tuple(slice(a, b) for a, b in zip(self.crop_lo, self.crop_hi))
        c = np.pad(density[box].astype(np.float32), 1)
        if not np.any(c[self.inside_padded] > 0):
            raise InputError("initial_density: no tumor inside the WM/GM domain")
        return np.where(self.inside_padded, c, np.float32(0.0))

    # ----------------------------------------------------------------------------------------------- stepping
    def _embed(self, crop: np.ndarray) -> np.ndarray:
        out = np.zeros(self.full_shape, dtype=np.float32)
        out[tuple(slice(a, b) for a, b in zip(self.crop_lo, self.crop_hi))] = crop[1:-1, 1:-1, 1:-1]
        return out

    def simulate(self, dw_mm2_per_day: float, rho_per_day: float, days, seed_index, *,
                 steps: StepSettings = DEFAULT_STEPS, progress=None, parallel: bool = True,
                 stats: dict | None = None, initial_density=None) -> np.ndarray:
        """Run one simulation.

        Parameters
        ----------
        dw_mm2_per_day : float
            Diffusivity in white matter (mm^2/day); grey matter gets Dw / ratio.
        rho_per_day : float
            Proliferation rate (1/day).
        days : float or sequence of float
            Output time(s) in days after seeding.
        seed_index : sequence of 3 float or None
            Seed centre as a continuous voxel index (i, j, k) of the full grid.
        steps : StepSettings
        progress : callable(fraction: float) or None
            Called after every step; may raise :class:`~TumorPersonalizationLib.errors.Cancelled` to stop.
        parallel : bool
            Use all cores for this one simulation (else one core, GIL released).
        stats : dict, optional
            Filled with the work done: ``steps``, ``stages`` (operator applications) and ``voxel_updates``.
        initial_density : array_like, shape (ni, nj, nk), optional
            Start from this density instead of a seed (``seed_index`` must then be None), e.g. to continue a
            simulation. Values outside the WM/GM domain are ignored.

        Returns
        -------
        np.ndarray, float32
            Density in [0, 1], shape ``(ni, nj, nk)`` for a scalar ``days``, else ``(len(days), ni, nj, nk)``.
        """
        dw = float(_positive("Dw (dw_mm2_per_day)", dw_mm2_per_day))
        rho = float(_positive("rho (rho_per_day)", rho_per_day))
        times = np.atleast_1d(_positive("T (days)", days)).astype(np.float64)
        if initial_density is None:
            c = self.seed_density(seed_index)
        elif seed_index is not None:
            raise InputError("give either seed_index or initial_density, not both")
        else:
            c = self._crop_initial(initial_density)
        outputs = np.empty((len(times),) + tuple(self.full_shape), dtype=np.float32)

        def record(index, state):
            outputs[index] = self._embed(state.c)

        state = self.integrate(c, times, dw, rho, record, steps=steps, progress=progress, parallel=parallel)
        if stats is not None:
            stats.update(steps=state.steps, stages=state.stages, voxel_updates=state.voxel_updates)
        return outputs[0] if np.ndim(days) == 0 else outputs

    def integrate(self, c, times, dw, rho, record, *, steps: StepSettings = DEFAULT_STEPS, progress=None,
                  parallel: bool = True, after_step=None) -> "_State":
        """Advance the padded-crop density ``c`` (modified in place) through the output ``times`` (days, any order).

        ``record(index, state)`` is called when ``times[index]`` is reached; ``after_step(state, t, dt)`` after each
        step (see :func:`_integrate_rkl2`). Parameters are checked by the caller. Returns the final state.
        """
        if steps.method not in ("rk4", "rkl2"):
            raise InputError(f"steps.method must be 'rkl2' or 'rk4', got {steps.method!r}")
        integrate = _integrate_rk4 if steps.method == "rk4" else _integrate_rkl2
        kernel_set = kernels.PARALLEL if parallel else kernels.SERIAL
        if steps.method == "rk4":
            if after_step is not None:
                raise InputError("the rk4 reference integrator runs Fisher-Kolmogorov only")
            c = c.astype(np.float64)  # the reference is computed in double precision
        t_end = float(np.max(times))

        def report(t):
            if progress is not None:
                progress(min(1.0, t / t_end))

        t_now = 0.0
        state = _State.start(c)
        for idx in np.argsort(times):
            integrate(self, state, dw, rho, t_now, times[idx], steps, kernel_set, report, after_step)
            t_now = times[idx]
            record(idx, state)
        return state

    def simulate_batch(self, dw_mm2_per_day, rho_per_day, days, seed_index, *, steps: StepSettings = DEFAULT_STEPS,
                       workers: int | None = None, progress=None) -> np.ndarray:
        """Run B simulations with their own parameters, one core each, ``workers`` at a time.

        Parameters
        ----------
        dw_mm2_per_day, rho_per_day, days : array_like, shape (B,)
        seed_index : array_like, shape (B, 3) or (3,)
            Continuous voxel indices; one shared seed when (3,).
        workers : int, optional
            Threads to use (default: number of CPUs).
        progress : callable(done: int, total: int) or None

        Returns
        -------
        np.ndarray, float32, shape (B, ni, nj, nk)
        """
        dw = np.atleast_1d(np.asarray(dw_mm2_per_day, dtype=np.float64))
        rho = np.atleast_1d(np.asarray(rho_per_day, dtype=np.float64))
        t = np.atleast_1d(np.asarray(days, dtype=np.float64))
        if not (dw.shape == rho.shape == t.shape) or dw.ndim != 1:
            raise InputError(f"batch parameters must be 1D arrays of one length, got Dw {dw.shape}, "
                             f"rho {rho.shape}, T {t.shape}")
        seeds = np.asarray(seed_index, dtype=np.float64)
        seeds = np.broadcast_to(seeds, (len(dw), 3)) if seeds.shape == (3,) else seeds
        if seeds.shape != (len(dw), 3):
            raise InputError(f"seed_index must have shape (3,) or ({len(dw)}, 3), got {seeds.shape}")
        for b in range(len(dw)):  # validate everything before spending time on any of it
            _positive("Dw", dw[b]), _positive("rho", rho[b]), _positive("T", t[b])
            self.check_seed(seeds[b], name=f"seed of batch member {b}")
        out = np.empty((len(dw),) + tuple(self.full_shape), dtype=np.float32)
        done = 0

        def run(b):
            out[b] = self.simulate(dw[b], rho[b], t[b], seeds[b], steps=steps, parallel=False)
            return b

        with ThreadPoolExecutor(max_workers=workers or available_cpus()) as pool:
            for _ in pool.map(run, range(len(dw))):
                done += 1
                if progress is not None:
                    progress(done, len(dw))
        return out


@dataclass
class _State:
    """Solution and work buffers on the padded crop, plus the box being computed (only ever grows)."""

    c: np.ndarray
    buffers: list
    lo: np.ndarray
    hi: np.ndarray
    active_lo: np.ndarray
    active_hi: np.ndarray
    dt: float | None = None
    steps: int = 0
    stages: int = 0
    voxel_updates: int = 0

    @classmethod
    def start(cls, c0: np.ndarray) -> "_State":
        # Every buffer starts equal to c0: outside the computed box the solution is frozen at c0, and stages read
        # their neighbours' values from these buffers. c0 is zero outside its support, and np.zeros is lazy.
        nz = np.nonzero(c0 > 0)
        active_lo = np.array([a.min() for a in nz])
        active_hi = np.array([a.max() + 1 for a in nz])
        support = tuple(slice(a, b) for a, b in zip(active_lo, active_hi))
        buffers = [np.zeros_like(c0) for _ in range(5)]
        for buffer in buffers:
            buffer[support] = c0[support]
        return cls(c0, buffers, active_lo.copy(), active_hi.copy(), active_lo, active_hi)

    def grow_box(self, reach: int) -> None:
        shape = np.asarray(self.c.shape)
        self.lo = np.minimum(self.lo, np.maximum(self.active_lo - reach, 1))
        self.hi = np.maximum(self.hi, np.minimum(self.active_hi + reach, shape - 1))

    def update_active(self, plane_box: np.ndarray) -> None:
        rows = np.nonzero(plane_box[:, 0] >= 0)[0]
        if rows.size == 0:
            return
        sub = plane_box[rows]
        self.active_lo = np.array([rows.min(), sub[:, 0].min(), sub[:, 2].min()])
        self.active_hi = np.array([rows.max() + 1, sub[:, 1].max() + 1, sub[:, 3].max() + 1])


def rkl2_stage_count(dt: float, dt_euler: float) -> int:
    """Smallest s >= 2 with dt <= dt_euler * (s^2 + s - 2) / 4 (RKL2 stability)."""
    s = math.ceil((-1.0 + math.sqrt(9.0 + 16.0 * dt / dt_euler)) / 2.0)
    return max(2, s)


def _rkl2_coefficients(s: int):
    """(mu_j, nu_j, mu~_j, gamma~_j) for j = 2..s, and mu~_1, of RKL2 with s stages (Meyer et al. 2014, eq. 16)."""
    b = np.empty(s + 1)
    b[:3] = 1.0 / 3.0
    for j in range(2, s + 1):
        b[j] = (j * j + j - 2.0) / (2.0 * j * (j + 1.0))
    a = 1.0 - b
    w1 = 4.0 / (s * s + s - 2.0)
    mu1 = b[1] * w1
    rows = []
    for j in range(2, s + 1):
        mu = (2.0 * j - 1.0) / j * b[j] / b[j - 1]
        nu = -(j - 1.0) / j * b[j] / b[j - 2]
        mut = mu * w1
        gam = -a[j - 1] * mut
        rows.append((mu, nu, mut, gam))
    return mu1, rows


_STABILITY_SAFETY = 0.95
_MAX_HALF_GROWTH_EXPONENT = 80.0  # exp(80) = 5.5e34 < float32's 3.4e38


def _step_schedule(t_start, t_end, dt):
    """Split [t_start, t_end] so no step exceeds dt and the last is not a sliver: the next step length."""
    remaining = t_end - t_start
    n = max(1, math.ceil(remaining / dt - 1e-9))
    return remaining / n


def _integrate_rkl2(domain: Domain, state: _State, dw, rho, t_start, t_end, steps: StepSettings, ks, report,
                    after_step=None):
    """Advance ``state`` from t_start to t_end.

    ``after_step(state, t, dt)``, if given, runs after every step and may change ``state.c`` and the domain's tissue
    (:meth:`Domain.set_tissue`) in place: the mass-effect model moves both there.
    """
    f32 = np.float32
    h2 = domain.spacing_mm ** 2
    wx, wy, wz = (f32(dw / h) for h in h2)
    c = state.c
    y0, ly0, ya, yb, yc = state.buffers
    n0 = c.shape[0]
    plane_change = np.zeros(n0, dtype=np.float32)
    plane_box = np.full((n0, 4), -1, dtype=np.int64)
    eps = f32(steps.active_threshold)
    dt = state.dt if state.dt is not None else steps.first_step_days
    # The reaction half step multiplies by exp(0.5 rho dt), which overflows float32 past 88 (the logistic then
    # reads inf / inf = NaN, flushed to 0: the tumor vanished without an error, e.g. rho = 2/day with 100-day
    # steps). Below 80 the formula is exact, so very fast growth only takes shorter steps.
    max_reaction_step = 2.0 * _MAX_HALF_GROWTH_EXPONENT / rho
    t = t_start
    while t < t_end - 1e-9:
        dt_step = _step_schedule(t, t_end, min(dt, steps.max_step_days, max_reaction_step))
        dt_euler = 2.0 / (dw * domain.lambda_max_per_dw) * _STABILITY_SAFETY  # the tissue may have moved
        s = rkl2_stage_count(dt_step, dt_euler)
        state.grow_box(s + 1)
        lo, hi = state.lo, state.hi
        mu1, rows = _rkl2_coefficients(s)
        half_growth = f32(math.exp(0.5 * rho * dt_step))
        ks.react_laplacian_first_stage(c, half_growth, domain.diffusivity, wx, wy, wz, f32(mu1 * dt_step),
                                       y0, ly0, ya, lo, hi)
        prev2, prev, spare = y0, ya, yb
        for mu, nu, mut, gam in rows:
            ks.rkl2_stage(prev, prev2, y0, ly0, domain.diffusivity, wx, wy, wz, f32(mu), f32(nu),
                          f32(mut * dt_step), f32(gam * dt_step), spare, lo, hi)
            prev2, prev, spare = prev, spare, (prev2 if prev2 is not y0 else yc)
        plane_change[:] = 0
        plane_box[:] = -1
        ks.logistic_final(prev, c, half_growth, eps, lo, hi, plane_change, plane_box)
        state.update_active(plane_box)
        state.steps += 1
        state.stages += s
        state.voxel_updates += (s + 1) * int(np.prod(hi - lo))
        t += dt_step
        change = float(plane_change.max())
        factor = 2.0 if change <= 0 else min(2.0, max(0.25, 0.9 * steps.step_tolerance / change))
        dt = dt_step * factor
        if after_step is not None:
            after_step(state, t, dt_step)
        report(t)
    state.dt = dt


def _integrate_rk4(domain: Domain, state: _State, dw, rho, t_start, t_end, steps: StepSettings, ks, report,
                   after_step=None):
    """Classical RK4 on the unsplit equation over the whole crop; the reference for accuracy checks."""
    f64 = np.float64
    wx, wy, wz = (f64(dw / h) for h in domain.spacing_mm ** 2)
    diffusivity = domain.diffusivity.astype(np.float64)
    # RK4's real-axis stability limit is 2.785 / lambda_max; rk4_fraction of it.
    dt_max = steps.rk4_fraction * 2.785 / (dw * domain.lambda_max_per_dw + rho)
    lo = np.ones(3, dtype=np.int64)
    hi = np.asarray(state.c.shape) - 1
    c = state.c
    k1, k2, k3, k4, tmp = state.buffers
    t = t_start
    while t < t_end - 1e-9:
        dt = _step_schedule(t, t_end, dt_max)
        ks.rk4_rate(c, diffusivity, wx, wy, wz, f64(rho), k1, lo, hi)
        np.add(c, 0.5 * dt * k1, out=tmp)
        ks.rk4_rate(tmp, diffusivity, wx, wy, wz, f64(rho), k2, lo, hi)
        np.add(c, 0.5 * dt * k2, out=tmp)
        ks.rk4_rate(tmp, diffusivity, wx, wy, wz, f64(rho), k3, lo, hi)
        np.add(c, dt * k3, out=tmp)
        ks.rk4_rate(tmp, diffusivity, wx, wy, wz, f64(rho), k4, lo, hi)
        c += dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        state.steps += 1
        state.stages += 4
        t += dt
        report(t)


def simulate(wm, gm, spacing_mm, dw_mm2_per_day, rho_per_day, days, seed_index, *, ratio: float = 10.0,
             steps: StepSettings = DEFAULT_STEPS, progress=None) -> np.ndarray:
    """One Fisher-Kolmogorov simulation in tissue maps; see :meth:`Domain.simulate` for the parameters.

    For many simulations in the same tissue maps build a :class:`Domain` once and call its methods.
    """
    return Domain(wm, gm, spacing_mm, ratio=ratio).simulate(dw_mm2_per_day, rho_per_day, days, seed_index,
                                                            steps=steps, progress=progress)
