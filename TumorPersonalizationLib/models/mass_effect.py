"""Tumor growth with mass effect: the growing tumor pushes the brain (thesis ch. 3, eqs. 3.6-3.13).

    dc/dt = div(D grad c) - div(c v) + rho c (1 - c)                     (3.6)
    dm/dt + div(m v) = 0,    m = (WM, GM, CSF)                           (3.7)
    div( lambda (div u) I + mu (grad u + grad u^T) ) = gamma grad c       (3.8)
    du/dt = v                                                            (3.9)
    no flux of c; u = v = 0 and no tissue transport at the brain's boundary (3.10-3.13)

with D = WM Dw + GM Dw / ratio as in the Fisher-Kolmogorov model. Units: mm, days, Dw in mm^2/day, rho in 1/day,
lambda, mu and gamma in Pa (u comes out in mm: only gamma / (lambda + 2 mu) enters it). gamma = 0 is exactly the
Fisher-Kolmogorov model (the mechanics is skipped and the same code path runs).

One time step (operator splitting; the step size comes from the Fisher-Kolmogorov controller):

1. diffusion-reaction over dt in the current (deformed) tissue: the Fisher-Kolmogorov solver's step, unchanged;
2. the quasi-static elasticity solve for the new density (:mod:`.elasticity`, CG warm-started from the last u);
3. v = (u_new - u_old) / dt: the tumor density and the three tissue maps are advected by u_new - u_old,
   conservatively, in as many sub-steps as the CFL rule asks for (:mod:`.advection`);
4. the diffusivity is rebuilt from the advected WM / GM.

Elastic body: every voxel with WM + GM + CSF >= 0.1 (the brain with its CSF); u = 0 on all other voxels (the skull).
So the model needs a CSF map: without one, the ventricles and sulci would be rigid holes.

Materials: each voxel's Lame coefficients are a mixture of four materials, the tumor with weight c and the tissues
with weight (1 - c) in the proportions WM : GM : CSF of the voxel's (advected) maps. Defaults (Young's modulus E,
Poisson's ratio nu) are those of Subramanian et al. (2019), the model the thesis cites for its mass-effect
parameters:

    =======  ========  =====  ================  ==============
    tissue   E (Pa)    nu     lambda (Pa)       mu (Pa)
    =======  ========  =====  ================  ==============
    WM, GM   2100      0.40   3000              750
    CSF      100       0.10   11.4              45.5
    tumor    8000      0.45   24828             2759
    =======  ========  =====  ================  ==============

gamma (Pa): the volumetric strain of a voxel full of tumor in free expansion is about gamma / (3 K) with the bulk
modulus K = lambda + 2 mu / 3 (26.7 kPa for the tumor material), so gamma sets how strongly the tumor pushes.
Documented range: 0 to :data:`GAMMA_MAX_PA` (a fully dense 3 cm tumor then displaces its surroundings by up to
about 1 cm with the default materials; see docs/methods/mass_effect.md for measured displacements).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from ..errors import InputError
from ..validation import unit_interval
from . import fisher_kolmogorov as fk
from .advection import advect
from .elasticity import (Coarsening, ElasticBody, SolverSettings, check_material, lame_from_young, numba_threads,
                         threads_for)

BODY_THRESHOLD = fk.DOMAIN_THRESHOLD
"""A voxel belongs to the elastic body when WM + GM + CSF >= this; outside it u = 0."""

GAMMA_MAX_PA = 10000.0
"""Largest mass-effect parameter gamma (Pa) accepted; see the module docstring for what it means."""

TISSUES = ("wm", "gm", "csf", "tumor")

ELASTICITY_SPACING_MM = 3.0
"""By default the elasticity is solved on a grid coarsened by an integer factor of at least 2 that brings its
spacing to about this or coarser (1 mm -> 3 mm, 1.5 mm -> 3 mm, 3 mm -> 6 mm), and interpolated back: the
displacement is smooth, and the solves are most of the model's cost (see docs/methods/mass_effect.md for what the
factor changes)."""


def default_elasticity_factor(spacing_mm) -> int:
    """The coarsening factor of the elasticity grid (see :data:`ELASTICITY_SPACING_MM`)."""
    return max(2, int(round(ELASTICITY_SPACING_MM / float(np.max(spacing_mm)))))


@dataclass(frozen=True)
class Material:
    """A linear elastic material: Young's modulus in Pa and Poisson's ratio (dimensionless)."""

    young_pa: float
    poisson: float

    @property
    def lame_pa(self) -> tuple[float, float]:
        """(lambda, mu) in Pa."""
        return lame_from_young(self.young_pa, self.poisson)


DEFAULT_MATERIALS = {
    "wm": Material(2100.0, 0.40),
    "gm": Material(2100.0, 0.40),
    "csf": Material(100.0, 0.10),
    "tumor": Material(8000.0, 0.45),
}
"""Subramanian et al. (2019): healthy tissue 2.1 kPa / 0.4, CSF 100 Pa / 0.1, tumor 8 kPa / 0.45."""


def materials_with(overrides: dict | None) -> dict:
    """The default materials updated by ``overrides`` ({tissue: Material}), every value checked (InputError)."""
    materials = dict(DEFAULT_MATERIALS)
    for name, material in (overrides or {}).items():
        if name not in TISSUES:
            raise InputError(f"material for {name!r}: the tissues are {', '.join(TISSUES)}")
        materials[name] = Material(float(material.young_pa), float(material.poisson))
    for name, material in materials.items():
        check_material(name, material.young_pa, material.poisson)
    return materials


def check_gamma(gamma_pa: float) -> float:
    """gamma as a float, or InputError unless 0 <= gamma <= :data:`GAMMA_MAX_PA`."""
    gamma = float(gamma_pa)
    if not (np.isfinite(gamma) and 0.0 <= gamma <= GAMMA_MAX_PA):
        raise InputError(f"gamma = {gamma_pa:g} Pa is outside [0, {GAMMA_MAX_PA:g}] Pa "
                         f"(0 = no mass effect; see the mass-effect model's documentation for the range)")
    return gamma


@dataclass
class MassEffectResult:
    """Output of :meth:`MassEffectDomain.simulate`; arrays on the full grid, a leading time axis when ``days`` was
    a sequence.

    Attributes
    ----------
    density : np.ndarray, float32, shape ([T,] ni, nj, nk)
        Tumor cell density in [0, 1].
    displacement_mm : np.ndarray, float32, shape ([T,] 3, ni, nj, nk)
        Tissue displacement u (mm) along the array axes i, j, k: the tissue now at voxel x came from about
        x - u(x).
    wm, gm, csf : np.ndarray, float32, shape ([T,] ni, nj, nk)
        The deformed tissue maps. The advection conserves each map's sum; voxels where compression made
        WM + GM + CSF exceed 1 are scaled to a sum of 1 here, so the maps stay probabilities.
    stats : dict
        ``steps``, ``elasticity_solves``, ``cg_iterations``, ``elasticity_seconds``, ``advection_substeps``,
        ``max_displacement_mm``.
    """

    density: np.ndarray
    displacement_mm: np.ndarray
    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    stats: dict = field(default_factory=dict)


@dataclass
class _Mechanics:
    """What the mechanics carries from step to step, on the padded crop."""

    tissue: np.ndarray  # (3, n0, n1, n2) float32: WM, GM, CSF
    u: np.ndarray  # (3, n0, n1, n2) float64, mm
    u_solver: np.ndarray  # u on the elasticity grid (the warm start of the next solve)
    c_solved: np.ndarray | None = None  # the density of the last solve
    solves: int = 0
    iterations: int = 0
    seconds: float = 0.0
    substeps: int = 0


@njit(inline="always")
def _voxel_lame(wm, gm, csf, share, table, which):
    """lambda (which = 0) or mu (which = 1) of one voxel: the tumor weighs ``share``, the tissues share the rest as
    WM : GM : CSF; a voxel with no tissue left takes the CSF value (the softest material)."""
    total = wm + gm + csf
    if total > 1e-6:
        healthy = (wm * table[0, which] + gm * table[1, which] + csf * table[2, which]) / total
    else:
        healthy = table[2, which]
    return share * table[3, which] + (1.0 - share) * healthy


@njit(parallel=True, cache=True)
def _lame_mixture(tissue, c, body, table, factor, offset, lam_out, mu_out, c_out):
    """Per solver-grid cell: mean (lambda, mu) over its block's body voxels and mean c over the whole block.

    Fine voxel (i, j, k) lies in solver cell (i // factor + offset, ...). ``table`` rows: WM, GM, CSF, tumor;
    columns: lambda, mu (Pa). The tumor's share is c clipped to [0, 1].
    """
    n0, n1, n2 = body.shape
    for ci in prange(lam_out.shape[0]):
        for cj in range(lam_out.shape[1]):
            for ck in range(lam_out.shape[2]):
                lam_sum, mu_sum, c_sum, count = 0.0, 0.0, 0.0, 0
                for i in range(max(0, (ci - offset) * factor), min(n0, (ci - offset + 1) * factor)):
                    for j in range(max(0, (cj - offset) * factor), min(n1, (cj - offset + 1) * factor)):
                        for k in range(max(0, (ck - offset) * factor), min(n2, (ck - offset + 1) * factor)):
                            c_sum += c[i, j, k]
                            if body[i, j, k]:
                                share = min(max(c[i, j, k], 0.0), 1.0)
                                w, g, s = tissue[0, i, j, k], tissue[1, i, j, k], tissue[2, i, j, k]
                                lam_sum += _voxel_lame(w, g, s, share, table, 0)
                                mu_sum += _voxel_lame(w, g, s, share, table, 1)
                                count += 1
                c_out[ci, cj, ck] = c_sum / (factor * factor * factor)
                lam_out[ci, cj, ck] = lam_sum / count if count > 0 else 0.0
                mu_out[ci, cj, ck] = mu_sum / count if count > 0 else 0.0


class MassEffectDomain:
    """Tissue maps prepared for mass-effect simulations (crop, elastic body, preconditioner).

    Parameters
    ----------
    wm, gm, csf : array_like, shape (ni, nj, nk)
        Tissue probabilities in [0, 1].
    spacing_mm : sequence of 3 float
    ratio : float
        Dw / Dg.
    materials : dict, optional
        {tissue: :class:`Material`} overriding :data:`DEFAULT_MATERIALS` for "wm", "gm", "csf", "tumor".
    solver : SolverSettings
        Tolerance and iteration limit of the elasticity solves.
    cfl : float
        Largest fraction of a voxel's content that leaves it in one advection sub-step.
    elasticity_factor : int, optional
        Solve the elasticity on a grid this many times coarser (default :func:`default_elasticity_factor`).
    resolve_voxels : float
        Skip a step's mechanics while the displacement it would add is predicted below this fraction of a voxel
        (predicted as max|u| times the relative L2 change of c since the last solve); the skipped change is
        applied at the next solve, and every output time gets one. 0 solves after every step.
    """

    def __init__(self, wm, gm, csf, spacing_mm, *, ratio: float = 10.0, materials: dict | None = None,
                 solver: SolverSettings = SolverSettings(), cfl: float = 0.5, elasticity_factor: int | None = None,
                 resolve_voxels: float = 0.5):
        if csf is None:
            raise InputError("the mass-effect model needs a CSF map: without one the ventricles would be rigid")
        wm, gm, _ = fk._validate_tissue(wm, gm, spacing_mm)
        csf = unit_interval(csf, "csf", "probabilities")
        if csf.shape != wm.shape:
            raise InputError(f"csf: shape {csf.shape} differs from wm shape {wm.shape}")
        body = (wm + gm + csf) >= BODY_THRESHOLD
        self.fk = fk.Domain(wm, gm, spacing_mm, ratio=ratio, crop_to=body)
        self.materials = materials_with(materials)
        self.solver = solver
        self.cfl = float(cfl)
        self.resolve_voxels = float(resolve_voxels)
        box = tuple(slice(a, b) for a, b in zip(self.fk.crop_lo, self.fk.crop_hi))
        self._tissue0 = np.stack([np.pad(m[box], 1) for m in (wm, gm, csf)]).astype(np.float32)
        self.body = np.pad(body[box], 1)
        factor = default_elasticity_factor(self.fk.spacing_mm) if elasticity_factor is None else elasticity_factor
        if int(factor) != factor or factor < 1:
            raise InputError(f"elasticity_factor must be a positive integer, got {elasticity_factor}")
        self.coarsening = Coarsening(self.body, int(factor)) if factor > 1 else None
        solver_body = self.body if self.coarsening is None else self.coarsening.body
        # The preconditioner's constant coefficients: the body's mean Lame values before the tumor grows.
        lam, mu = self.lame_fields(self._tissue0, np.zeros(self.body.shape, dtype=np.float32))
        self.elastic = ElasticBody(solver_body, self.fk.spacing_mm * factor,
                                   (float(lam[self.body].mean()), float(mu[self.body].mean())))

    # ----------------------------------------------------------------------------------------------- mechanics
    def lame_fields(self, tissue: np.ndarray, c: np.ndarray, on_solver_grid: bool = False):
        """(lambda, mu) in Pa, float64, from tissue maps (3, n0, n1, n2) and tumor density (n0, n1, n2) on the
        padded crop; with ``on_solver_grid`` block means on the elasticity grid, plus the block-mean density.

        Tumor weight c (clipped to [0, 1]); the rest split as the voxel's WM : GM : CSF. A voxel with no tissue
        left (all pushed away) takes the CSF values: it is the softest material.
        """
        table = np.array([self.materials[name].lame_pa for name in TISSUES], dtype=np.float64)
        grid = self.coarsening if on_solver_grid else None
        shape = self.body.shape if grid is None else grid.shape
        factor, offset = (1, 0) if grid is None else (grid.factor, 1)
        lam, mu, c_mean = (np.zeros(shape) for _ in range(3))
        _lame_mixture(np.ascontiguousarray(tissue, dtype=np.float32), np.ascontiguousarray(c, dtype=np.float32),
                      self.body, table, factor, offset, lam, mu, c_mean)
        return (lam, mu, c_mean) if on_solver_grid else (lam, mu)

    def solve_displacement(self, c: np.ndarray, gamma_pa: float, tissue: np.ndarray | None = None,
                           initial: np.ndarray | None = None):
        """The elasticity solve alone, for density ``c`` and ``tissue`` on the padded crop (default tissue: the
        undeformed maps), warm-started from ``initial`` (u on the elasticity grid).

        Returns
        -------
        u : np.ndarray, float64, shape (3, n0, n1, n2)
            Displacement in mm on the padded crop.
        u_solver : np.ndarray
            The same on the elasticity grid (the next solve's ``initial``).
        report : SolveReport
        """
        tissue = self._tissue0 if tissue is None else tissue
        lam, mu, c = self.lame_fields(tissue, c, on_solver_grid=True)
        grid = self.coarsening
        u_solver, report = self.elastic.solve(lam, mu, self.elastic.load(c, gamma_pa), initial=initial,
                                              settings=self.solver)
        u = u_solver if grid is None else grid.prolong(u_solver)
        return u, u_solver, report

    def mechanics_step(self, c: np.ndarray, gamma_pa: float, mechanics: _Mechanics) -> None:
        """Steps 2-4 of the module docstring: solve for u, advect c and the tissue by its change, update D.

        ``c`` (padded crop, float32) and ``mechanics`` are modified in place.
        """
        with numba_threads(threads_for(c.size)):
            self._mechanics_step(c, gamma_pa, mechanics)

    def _mechanics_step(self, c, gamma_pa, mechanics) -> None:
        u, mechanics.u_solver, report = self.solve_displacement(c, gamma_pa, mechanics.tissue,
                                                                initial=mechanics.u_solver)
        fields = np.concatenate([c[None], mechanics.tissue])
        mechanics.substeps += advect(fields, u - mechanics.u, self.body, self.fk.spacing_mm, self.cfl)
        c[...] = fields[0]
        mechanics.tissue[...] = fields[1:]
        mechanics.u = u
        mechanics.c_solved = c.copy()
        mechanics.solves += 1
        mechanics.iterations += report.iterations
        mechanics.seconds += report.seconds
        self.fk.set_tissue(mechanics.tissue[0], mechanics.tissue[1])

    def mechanics_due(self, c: np.ndarray, mechanics: _Mechanics) -> bool:
        """Whether the density has changed enough since the last solve to move the tissue (``resolve_voxels``)."""
        if mechanics.c_solved is None or self.resolve_voxels <= 0:
            return True
        reference = float(np.linalg.norm(mechanics.c_solved))
        change = float(np.linalg.norm(c - mechanics.c_solved)) / max(reference, 1e-30)
        predicted = float(np.abs(mechanics.u).max()) * change
        return predicted >= self.resolve_voxels * float(self.fk.spacing_mm.min())

    def start_mechanics(self) -> _Mechanics:
        """Undeformed tissue, u = 0 (also restores the Fisher-Kolmogorov domain's tissue)."""
        self.fk.set_tissue(self._tissue0[0], self._tissue0[1])
        return _Mechanics(self._tissue0.copy(), np.zeros((3,) + self.body.shape),
                          np.zeros((3,) + self.elastic.shape))

    # ----------------------------------------------------------------------------------------------- simulation
    def simulate(self, dw_mm2_per_day: float, rho_per_day: float, days, seed_index, gamma_pa: float, *,
                 steps: fk.StepSettings = fk.DEFAULT_STEPS, progress=None, parallel: bool = True,
                 initial_density=None) -> MassEffectResult:
        """Run one simulation; parameters as :meth:`fisher_kolmogorov.Domain.simulate` plus ``gamma_pa``.

        Returns
        -------
        MassEffectResult
        """
        dw = float(fk._positive("Dw (dw_mm2_per_day)", dw_mm2_per_day))
        rho = float(fk._positive("rho (rho_per_day)", rho_per_day))
        times = np.atleast_1d(fk._positive("T (days)", days)).astype(np.float64)
        gamma = check_gamma(gamma_pa)
        if steps.method != "rkl2":
            raise InputError("the mass-effect model runs with the rkl2 integrator only")
        mechanics = self.start_mechanics()
        if initial_density is None:
            c = self.fk.seed_density(seed_index)
        elif seed_index is not None:
            raise InputError("give either seed_index or initial_density, not both")
        else:
            c = self.fk._crop_initial(initial_density)

        def after_step(state, t, dt):
            at_output = np.any(np.abs(times - t) < 1e-9)
            if at_output or self.mechanics_due(state.c, mechanics):
                self.mechanics_step(state.c, gamma, mechanics)

        outputs = {name: np.zeros((len(times),) + tuple(self.fk.full_shape), dtype=np.float32)
                   for name in ("density", "wm", "gm", "csf")}
        outputs["displacement_mm"] = np.zeros((len(times), 3) + tuple(self.fk.full_shape), dtype=np.float32)

        def record(index, state):
            outputs["density"][index] = np.clip(self.fk._embed(state.c), 0.0, 1.0)
            scale = 1.0 / np.maximum(mechanics.tissue.sum(axis=0), 1.0)
            for t, name in enumerate(("wm", "gm", "csf")):
                outputs[name][index] = self.fk._embed(mechanics.tissue[t] * scale)
            for axis in range(3):
                outputs["displacement_mm"][index, axis] = self.fk._embed(mechanics.u[axis].astype(np.float32))

        try:
            fk_state = self.fk.integrate(c, times, dw, rho, record, steps=steps, progress=progress,
                                         parallel=parallel and threads_for(c.size) > 1,
                                         after_step=after_step if gamma > 0 else None)
        finally:
            self.fk.set_tissue(self._tissue0[0], self._tissue0[1])
        stats = dict(steps=fk_state.steps, elasticity_solves=mechanics.solves, cg_iterations=mechanics.iterations,
                     elasticity_seconds=round(mechanics.seconds, 3), advection_substeps=mechanics.substeps,
                     max_displacement_mm=float(np.sqrt((outputs["displacement_mm"][-1] ** 2).sum(axis=0)).max()))
        squeeze = np.ndim(days) == 0
        pick = (lambda a: a[0]) if squeeze else (lambda a: a)
        return MassEffectResult(density=pick(outputs["density"]), displacement_mm=pick(outputs["displacement_mm"]),
                                wm=pick(outputs["wm"]), gm=pick(outputs["gm"]), csf=pick(outputs["csf"]),
                                stats=stats)


class AtGamma:
    """A :class:`MassEffectDomain` at one gamma, behind the Fisher-Kolmogorov :class:`~.fisher_kolmogorov.Domain`'s
    interface for callers that only need the density (``inside``, ``spacing_mm``, ``check_seed``, ``simulate``):
    the fits of Learn-Morph-Infer run on either model through it. The last run's full result (displacement,
    deformed tissue) is kept in ``last``.

    Parameters
    ----------
    domain : MassEffectDomain
    gamma_pa : float
        The mass-effect parameter (Pa), checked by :func:`check_gamma`.
    """

    def __init__(self, domain: MassEffectDomain, gamma_pa: float):
        self.domain = domain
        self.gamma_pa = check_gamma(gamma_pa)
        self.last: MassEffectResult | None = None

    @property
    def inside(self) -> np.ndarray:
        """(ni, nj, nk) bool: the undeformed WM/GM domain, where seeds may lie."""
        return self.domain.fk.inside

    @property
    def spacing_mm(self) -> np.ndarray:
        return self.domain.fk.spacing_mm

    def check_seed(self, seed_index, name: str = "seed") -> np.ndarray:
        return self.domain.fk.check_seed(seed_index, name)

    def simulate(self, dw_mm2_per_day: float, rho_per_day: float, days, seed_index, *,
                 steps: fk.StepSettings = fk.DEFAULT_STEPS, progress=None, parallel: bool = True) -> np.ndarray:
        """The density of :meth:`MassEffectDomain.simulate` at this gamma (float32, in [0, 1])."""
        self.last = self.domain.simulate(dw_mm2_per_day, rho_per_day, days, seed_index, self.gamma_pa, steps=steps,
                                         progress=progress, parallel=parallel)
        return self.last.density


def jacobian_determinant(displacement_mm: np.ndarray, spacing_mm, sign: float = 1.0) -> np.ndarray:
    """det(I + sign * grad u) per voxel (central differences), for u of shape (3, ni, nj, nk) in mm.

    sign = +1: the map x -> x + u(x); sign = -1: x -> x - u(x), the map from the deformed anatomy back to the
    healthy one (what the displacement-field file stores). Values <= 0 would mean the deformation folds.
    """
    u = np.asarray(displacement_mm, dtype=np.float64) * sign
    grad = np.empty((3, 3) + u.shape[1:])
    for a in range(3):
        for b in range(3):
            grad[a, b] = np.gradient(u[a], float(spacing_mm[b]), axis=b)
    grad[0, 0] += 1.0
    grad[1, 1] += 1.0
    grad[2, 2] += 1.0
    return np.linalg.det(np.moveaxis(grad, (0, 1), (-2, -1)))


def simulate(wm, gm, csf, spacing_mm, dw_mm2_per_day, rho_per_day, days, seed_index, gamma_pa, *,
             ratio: float = 10.0, materials: dict | None = None, steps: fk.StepSettings = fk.DEFAULT_STEPS,
             progress=None) -> MassEffectResult:
    """One mass-effect simulation in tissue maps; see :meth:`MassEffectDomain.simulate`.

    For many simulations in the same tissue maps build a :class:`MassEffectDomain` once.
    """
    domain = MassEffectDomain(wm, gm, csf, spacing_mm, ratio=ratio, materials=materials)
    return domain.simulate(dw_mm2_per_day, rho_per_day, days, seed_index, gamma_pa, steps=steps,
                           progress=progress)


__all__ = ["AtGamma", "BODY_THRESHOLD", "DEFAULT_MATERIALS", "GAMMA_MAX_PA", "Material", "MassEffectDomain",
           "MassEffectResult", "check_gamma", "jacobian_determinant", "materials_with", "simulate"]
