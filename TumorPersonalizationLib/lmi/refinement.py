"""Optional refinement of the network's estimate: a short Nelder-Mead search that fits the segmentations better.

The thesis proposes it as future work. Objective (``mask_fit``): how well the simulation explains the observed
T1Gd and FLAIR masks, with the visibility levels c_T1Gd in [0.5, 0.85] and c_FLAIR in [0.05, 0.5] integrated out
under their uniform prior (the network does not predict them, and fitting them would leave the profile's steepness
undetermined: a diffuse tumor seen at close levels and a steep one at distant levels have the same edges).
Search space: log(mu1 mu2), which sets the lesion's size (the front lies near 2 mu1 mu2 mm from the seed),
log(mu1 / mu2), which sets how diffuse its edge is (sqrt(Dw / rho)), and the seed position (network-grid voxels).
Along these axes the objective is closer to separable than along log mu1, log mu2, so the simplex needs fewer
steps. :func:`search` searches on the grid of the masks it is given; :func:`refine_coarse_to_fine` first on the
3 mm network grid (~20-40 ms per simulation), then on the atlas' 1.5 mm grid (~0.05-0.8 s), and last polishes
there with a sharper objective (:data:`SHARP`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import minimize

from ..errors import InputError
from ..imaging.volume import bounding_box
from ..models.fisher_kolmogorov import Domain
from .grids import FitGrid
from .parameters import simulate_time_independent

DEFAULT_EVALUATIONS = 300
"""Simulations allowed by default on the coarse (network) grid; the search stops after ~110-130 on average
(docs/methods/lmi.md, bench/lmi.py)."""

FINE_EVALUATIONS = 120
"""Simulations allowed by default on the fine (atlas) grid, after the coarse search: ~0.05-0.8 s each at 1.5 mm.
On 40 validation cases 60 of them raised Dice at c = 0.01 / 0.1 / 0.8 (scored at 1.5 mm) from 0.919 / 0.911 /
0.794 (coarse search alone) to 0.952 / 0.949 / 0.868. From the seed regressor's closer start (first 50 test cases)
120 instead of 60 took the refined Dice from 0.961 / 0.960 / 0.810 to 0.970 / 0.962 / 0.827 and the objective from
0.0475 to 0.0464, at 33 instead of 20 s per case on one core (docs/methods/lmi.md)."""

POLISH_EVALUATIONS = 60
"""Simulations allowed by default for the last, sharp stage on the fine grid (:data:`SHARP`; ~0.1-1 s each)."""

T1GD_LEVELS = np.linspace(0.5, 0.85, 15)
FLAIR_LEVELS = np.linspace(0.05, 0.5, 19)
"""Visibility levels tried for each mask (the thesis' ranges, steps of 0.025)."""


@dataclass(frozen=True, eq=False)
class MaskObjective:
    """How :func:`mask_fit` compares a density with the masks.

    Attributes
    ----------
    width_voxels : float
        Width of the partial-volume ramp, in voxels along the density's gradient: 1 makes the Dice smooth enough
        for a simplex far from the optimum; smaller widths come closer to the hard Dice the masks were made with.
    t1gd_levels, flair_levels : (n,) float
        Visibility levels integrated over (uniform prior, the thesis' ranges).
    """

    width_voxels: float
    t1gd_levels: np.ndarray
    flair_levels: np.ndarray


SMOOTH = MaskObjective(1.0, T1GD_LEVELS, FLAIR_LEVELS)
"""The search's objective on both grids."""

SHARP = MaskObjective(0.1, np.linspace(0.5, 0.85, 141), np.linspace(0.05, 0.5, 181))
"""The polish's objective (levels in steps of 0.0025). Why: with :data:`SMOOTH` the fine search's optimum fits the
masks better than the true parameters do in 36 of 40 validation cases (the one-voxel ramp and the coarse level
steps blur what tells them apart); with this one the truth fits better than that optimum in 29 of 40. Sixty more
simulations from the fine optimum with it (40 validation cases): Dice at c = 0.01 / 0.1 / 0.8 +0.016 +- 0.003 /
+0.014 +- 0.004 / +0.015 +- 0.017 and MAE lower by 15-25 %; on all 600 test cases, paired, +0.020 +- 0.001 /
+0.015 +- 0.001 / +0.033 +- 0.007 (to 0.971 / 0.965 / 0.868), refined mu1 error (median) 4.7 -> 2.2 %
(docs/methods/lmi.md, "The polish"). Too sharp to start the search with: the simplex stalls on its steps far from the
optimum."""

DICE_LIKELIHOOD_SCALE = 100.0
"""Scale of the pseudo-likelihood exp(-scale (1 - Dice)) with which the visibility levels are integrated out.
Chosen on 30 validation cases (Dice at c = 0.01 / 0.1 / 0.8 after refinement): 15: 0.850 / 0.871 / 0.795,
30: 0.881 / 0.893 / 0.831, 50: 0.903 / 0.905 / 0.851, 100: 0.910 / 0.914 / 0.853, 200: 0.911 / 0.910 / 0.829,
levels fitted (infinite scale): 0.898 / 0.899 / 0.782; the sigmoid soft Dice used before: 0.899 / 0.907 / 0.764."""


@dataclass(frozen=True)
class Fit:
    """Objective (lower is better) and, for the report, the best visibility levels and the Dice they reach."""

    objective: float
    dice_t1gd: float
    dice_flair: float
    uc_t1gd: float
    uc_flair: float


def _dice_per_level(density: np.ndarray, step: np.ndarray, observed: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Dice of the partial-volume masks {c >= level} against ``observed`` (flat arrays), one per level."""
    # Fraction of each voxel above the level, linear in c over a width ``step`` (mask_fit): 0.5 at the voxel
    # centre when c == level, 0 or 1 half a step away.
    predicted = np.clip(0.5 + (density[None, :] - levels[:, None]) / step[None, :], 0.0, 1.0)
    overlap = predicted[:, observed].sum(axis=1)
    total = predicted.sum(axis=1) + np.count_nonzero(observed)
    return np.where(total > 0, 2.0 * overlap / np.maximum(total, 1e-12), 1.0)  # both empty: a perfect match


def _level_marginal(dice: np.ndarray, scale: float) -> float:
    """-log(mean over levels of exp(-scale (1 - Dice))) / scale; 1 - the best Dice when scale is inf."""
    misfit = 1.0 - dice
    best = misfit.min()
    if np.isinf(scale):
        return float(best)
    return float(best - np.log(np.mean(np.exp(-scale * (misfit - best)))) / scale)


def nearest_inside(inside: np.ndarray) -> np.ndarray:
    """Where each voxel takes its density from when the domain's edge is continued with zero flux.

    Parameters
    ----------
    inside : (ni, nj, nk) bool
        The solver's domain (WM/GM).

    Returns
    -------
    (3, ni, nj, nk) int
        Index of the nearest domain voxel (the voxel itself inside the domain).
    """
    inside = np.asarray(inside, bool)
    if not inside.any():
        raise InputError("mask_fit: the solver domain is empty")
    return ndimage.distance_transform_edt(~inside, return_indices=True)[1]


def mask_fit(density: np.ndarray, t1gd: np.ndarray, flair: np.ndarray, inside: np.ndarray | None = None,
             scale: float = DICE_LIKELIHOOD_SCALE, nearest: np.ndarray | None = None,
             objective: MaskObjective = SMOOTH) -> Fit:
    """How well a density explains the two masks, the visibility levels being unknown (arrays on one grid).

    The simulated masks are partial-volume masks: a voxel counts by the fraction of it where c >= level,
    approximated as linear in c over a width of ``objective.width_voxels`` (one by default) voxels times the
    gradient's length (central differences;
    exact for a gradient along an axis, somewhat sharp for a diagonal one, whose range across the voxel is up to
    sqrt(3) times wider but concentrated in the middle). Unlike a
    sigmoid of c - level, this smoothing has the same width in space whatever the steepness of the profile, and
    voxels with c = 0 count 0; the Dice is continuous in the model parameters, so the simplex does not stall on
    the plateaus of a hard Dice. ``inside`` (the solver's WM/GM domain, optional) keeps the edge of the domain
    from looking like a steep edge of the tumor: outside it nothing counts, and the gradient there is taken
    from the density continued with zero flux, as the solver treats that boundary.

    The levels are not fitted but integrated out under their uniform prior (the thesis' ranges, as in training),
    with exp(-scale (1 - Dice)) as likelihood. A diffuse profile matches the masks at one narrow pair of levels
    only; a steeper one over a range of them; fitting the levels instead (``scale = inf``) would not prefer
    either, and the mask's edges alone do not tell the two apart. The objective lies in [0, 1].

    ``nearest``: :func:`nearest_inside` of ``inside``, when the caller evaluates many densities on one domain
    (computed here otherwise). ``objective``: the ramp's width and the levels (:data:`SMOOTH`, :data:`SHARP`).
    """
    if not scale > 0:
        raise InputError(f"mask_fit: scale must be positive (or inf), got {scale}")
    t1gd, flair = np.asarray(t1gd, bool), np.asarray(flair, bool)
    # Only voxels that can be partly above the lowest level or are observed contribute: crop to their box.
    lowest = min(objective.t1gd_levels[0], objective.flair_levels[0])
    box = bounding_box((density >= 0.5 * lowest) | flair | t1gd, 2)
    c = np.asarray(density[box], dtype=np.float64)
    outside = None
    if inside is not None:
        outside = ~np.asarray(inside, bool)[box]
        if outside.any():
            nearest = nearest_inside(inside) if nearest is None else np.asarray(nearest)
            if nearest.shape != (3,) + density.shape:
                raise InputError(f"mask_fit: nearest has shape {nearest.shape}, the density {density.shape}")
            c = np.asarray(density[tuple(axis[box] for axis in nearest)], dtype=np.float64)
    step = np.maximum(np.sqrt(sum(g * g for g in np.gradient(c))) * objective.width_voxels, 1e-6)
    if outside is not None:
        c = np.where(outside, -np.inf, c)  # never above a level
    t1gd, flair = t1gd[box], flair[box]
    region = (c + 0.5 * step >= lowest) | flair | t1gd
    c, step = c[region], step[region]
    dice_t1 = _dice_per_level(c, step, t1gd[region], objective.t1gd_levels)
    dice_fl = _dice_per_level(c, step, flair[region], objective.flair_levels)
    value = 0.5 * (_level_marginal(dice_t1, scale) + _level_marginal(dice_fl, scale))
    best_t1, best_fl = int(np.argmax(dice_t1)), int(np.argmax(dice_fl))
    return Fit(value, float(dice_t1[best_t1]), float(dice_fl[best_fl]),
               float(objective.t1gd_levels[best_t1]), float(objective.flair_levels[best_fl]))


SIMPLEX_STEPS = np.array([0.1, 0.2, 1.0, 1.0, 1.0])
"""Initial simplex around a point: log(mu1 mu2), log(mu1 / mu2), seed i, j, k (voxels of the searched grid)."""

POLISH_SIMPLEX_STEPS = np.array([0.03, 0.06, 0.3, 0.3, 0.3])
"""The polish's, a third as wide: it starts at the fine search's optimum (median errors there 5 % in mu1 and mu2,
0.3 mm in the seed on the test set)."""


def _mu(x: np.ndarray) -> tuple[float, float]:
    """(log(mu1 mu2), log(mu1 / mu2), ...) -> (mu1, mu2)."""
    return float(np.exp(0.5 * (x[0] + x[1]))), float(np.exp(0.5 * (x[0] - x[1])))


@dataclass(frozen=True)
class Search:
    """The result of one Nelder-Mead search (:func:`search`): the best point, the fits at the start and there, the
    simulations spent and the seconds taken."""

    mu1: float
    mu2: float
    seed_index: tuple
    start: Fit
    end: Fit
    evaluations: int
    seconds: float

    def as_dict(self) -> dict:
        """JSON-ready, for reports: mu1, mu2, seed_index (list), start and end (Fit as dict), evaluations,
        seconds."""
        return {"mu1": self.mu1, "mu2": self.mu2, "seed_index": list(self.seed_index), "start": asdict(self.start),
                "end": asdict(self.end), "evaluations": self.evaluations, "seconds": self.seconds}


class _Objective:
    """The search's cost of a point (log(mu1 mu2), log(mu1 / mu2), seed): simulate, :func:`mask_fit` the masks.
    Remembers every fit by point and counts the simulations; points outside the box or the brain cost 2 (worse
    than any fit, whose objective is <= 1) without a simulation."""

    def __init__(self, domain: Domain, t1gd, flair, mu_bounds, likelihood_scale: float, objective: MaskObjective,
                 nearest, parallel: bool, progress, max_evaluations: int):
        self.domain, self.t1gd, self.flair, self.mu_bounds = domain, t1gd, flair, mu_bounds
        self.likelihood_scale, self.objective, self.parallel = likelihood_scale, objective, parallel
        self.nearest = nearest_inside(domain.inside) if nearest is None else nearest  # once, not per evaluation
        self.progress, self.max_evaluations = progress, max_evaluations
        self.evaluations, self.fits = 0, {}

    def fit_at(self, x) -> Fit | None:
        return self.fits.get(tuple(np.round(x, 12)))

    def __call__(self, x) -> float:
        key = tuple(np.round(x, 12))
        if key in self.fits:  # scipy evaluates the first vertex of the initial simplex again
            return self.fits[key].objective
        mu1, mu2 = _mu(x)
        (mu1_low, mu1_high), (mu2_low, mu2_high) = self.mu_bounds
        if not (mu1_low <= mu1 <= mu1_high and mu2_low <= mu2 <= mu2_high):
            return 2.0  # outside the trained range
        try:
            self.domain.check_seed(x[2:])
        except InputError:
            return 2.0  # outside the brain
        self.evaluations += 1
        if self.progress is not None:
            self.progress(min(self.evaluations / self.max_evaluations, 1.0))
        density = simulate_time_independent(self.domain, mu1, mu2, x[2:], parallel=self.parallel)
        fit = mask_fit(density, self.t1gd, self.flair, self.domain.inside, self.likelihood_scale, self.nearest,
                       self.objective)
        self.fits[key] = fit
        return fit.objective


def search(domain: Domain, t1gd: np.ndarray, flair: np.ndarray, mu1_mm: float, mu2: float, seed_index, *,
           max_evaluations: int = DEFAULT_EVALUATIONS, mu_bounds=((0.5, 40.0), (0.2, 10.0)),
           likelihood_scale: float = DICE_LIKELIHOOD_SCALE, objective: MaskObjective = SMOOTH,
           simplex_steps: np.ndarray = SIMPLEX_STEPS, nearest: np.ndarray | None = None, parallel: bool = True,
           progress=None) -> Search:
    """Nelder-Mead over (log(mu1 mu2), log(mu1 / mu2), seed) from a starting point, on one grid.

    Parameters
    ----------
    domain : Domain
        Solver domain on the grid of the masks (the network grid or the atlas grid).
    t1gd, flair : (ni, nj, nk) bool
        Observed masks on that grid (FLAIR contains T1Gd).
    mu1_mm, mu2, seed_index : the starting point (seed as a continuous voxel index of that grid).
    max_evaluations : int
        Simulations allowed (the starting point included).
    mu_bounds : ((mu1_low, mu1_high), (mu2_low, mu2_high))
        The search stays in this box (the network's trained range): outside it, simulations grow large and slow.
    likelihood_scale : float
        How sharply the objective rewards Dice when integrating out the visibility levels (``mask_fit``).
    objective : MaskObjective
        The ramp's width and the levels of ``mask_fit``.
    simplex_steps : (5,) float
        The initial simplex's steps (:data:`SIMPLEX_STEPS`).
    nearest : (3, ni, nj, nk) int or None
        :func:`nearest_inside` of the domain, when the caller searches the same domain more than once.
    parallel : bool
        Let each simulation use every core (False in worker processes that run side by side).
    progress : callable(fraction) or None
        Called after each simulation; may raise Cancelled.
    """
    t1gd, flair = np.asarray(t1gd, bool), np.asarray(flair, bool) | np.asarray(t1gd, bool)
    if not t1gd.any():
        raise InputError("refinement: the T1Gd mask is empty on the grid of the search")
    start_time = time.perf_counter()
    cost = _Objective(domain, t1gd, flair, mu_bounds, likelihood_scale, objective, nearest, parallel, progress,
                      max_evaluations)
    x0 = np.array([np.log(mu1_mm * mu2), np.log(mu1_mm / mu2), *np.asarray(seed_index, dtype=float)])
    start_value = cost(x0)
    start_fit = cost.fit_at(x0)
    if start_fit is None:
        raise InputError(f"refinement: the starting seed {np.round(seed_index, 1).tolist()} lies outside the brain")
    simplex = np.vstack([x0] + [x0 + np.eye(len(x0))[d] * simplex_steps[d] for d in range(len(x0))])
    result = minimize(cost, x0, method="Nelder-Mead",
                      options={"maxfev": max(max_evaluations - 1, 1), "initial_simplex": simplex,
                               "xatol": 0.05, "fatol": 1e-4})
    x = result.x if result.fun <= start_value else x0
    end_fit = cost.fit_at(x) or start_fit
    mu1, mu2 = _mu(x)
    return Search(float(mu1), float(mu2), tuple(float(v) for v in x[2:]), start_fit, end_fit, cost.evaluations,
                  time.perf_counter() - start_time)


@dataclass(frozen=True)
class Refinement:
    """The result of :func:`refine_coarse_to_fine`.

    Attributes
    ----------
    mu1, mu2 : float
        The refined parameters.
    seed_index : tuple of 3 float
        The refined seed on the grid it was fitted on, ``grid``: "fine" (the fine grid of the search) or "coarse"
        (the fine stage skipped); ``seed_ras_mm`` the same point in that grid's space (RAS mm).
    coarse, fine, polish : Search or None
        Each stage's search (None: skipped).
    evaluations, seconds
        In all.
    """

    mu1: float
    mu2: float
    seed_index: tuple
    grid: str
    seed_ras_mm: tuple
    coarse: Search
    fine: Search | None
    polish: Search | None
    evaluations: int
    seconds: float

    def as_dict(self) -> dict:
        """JSON-ready, for reports (the stages as :meth:`Search.as_dict`, None where skipped)."""
        stages = {name: None if stage is None else stage.as_dict()
                  for name, stage in (("coarse", self.coarse), ("fine", self.fine), ("polish", self.polish))}
        return {"mu1": self.mu1, "mu2": self.mu2, "seed_index": list(self.seed_index), "grid": self.grid,
                "seed_ras_mm": list(self.seed_ras_mm), **stages, "evaluations": self.evaluations,
                "seconds": self.seconds}


def _stage_progress(progress, shares: list):
    """Callbacks for consecutive stages that take ``shares`` of ``progress``'s [0, 1] (None without one)."""
    offsets = np.concatenate([[0.0], np.cumsum(shares)])
    if progress is None:
        return [None] * len(shares)
    return [lambda f, start=offsets[k], share=shares[k]: progress(start + share * f) for k in range(len(shares))]


def refine_coarse_to_fine(coarse: FitGrid, fine: FitGrid | None, mu1_mm: float, mu2: float, seed_index, *,
                          evaluations: int = DEFAULT_EVALUATIONS, fine_evaluations: int = FINE_EVALUATIONS,
                          polish_evaluations: int = POLISH_EVALUATIONS, mu_bounds=((0.5, 40.0), (0.2, 10.0)),
                          parallel: bool = True, progress=None) -> Refinement:
    """:func:`search` on the coarse grid from the network's estimate, then again on the fine grid from there, then
    a polish on the fine grid with the sharper objective (:data:`SHARP`).

    Why two grids: on the 3 mm network grid the FLAIR rim around the T1Gd lesion is 1-3 voxels wide, so several
    parameter sets explain the coarse masks equally well (the truth's objective is no better than the coarse
    optimum's); the same masks at the atlas' 1.5 mm tell them apart. The coarse search is cheap (~20 ms per
    simulation) and brings the fine one (~0.05-0.8 s per simulation) close enough for a short search. Why a polish:
    the one-voxel ramp of :data:`SMOOTH` still blurs what tells the truth from its neighbours; the sharp objective
    does not, but needs a start this close.

    Parameters
    ----------
    coarse, fine : FitGrid
        ``fine`` None (or ``fine_evaluations`` 0): the coarse search only. ``fine`` may lie in the patient's space
        (its ``point_from_atlas`` set: the patient's own tissue); the result's seed is then in the patient's RAS.
    mu1_mm, mu2 : float
        Start (the network's estimate).
    seed_index : sequence of 3 float
        Start, continuous index on the coarse grid.
    evaluations, fine_evaluations, polish_evaluations : int
        Simulations allowed on each grid and for the polish (0: skip it).
    mu_bounds, parallel : as in :func:`search`.
    progress : callable(fraction) or None
        Over all stages (the coarse one counts for a fifth, the polish for a quarter).
    """
    use_fine = fine is not None and fine_evaluations > 0
    use_polish = use_fine and polish_evaluations > 0
    reports = _stage_progress(progress, [0.2, 0.55, 0.25] if use_polish else [0.2, 0.8] if use_fine else [1.0])
    first = search(coarse.domain, coarse.t1gd, coarse.flair, mu1_mm, mu2, seed_index, max_evaluations=evaluations,
                   mu_bounds=mu_bounds, parallel=parallel, progress=reports[0])
    second = third = None
    if use_fine:
        nearest = nearest_inside(fine.domain.inside)  # for both stages on the fine grid
        second = search(fine.domain, fine.t1gd, fine.flair, first.mu1, first.mu2,
                        fine.seed_from(coarse, first.seed_index), max_evaluations=fine_evaluations,
                        mu_bounds=mu_bounds, nearest=nearest, parallel=parallel, progress=reports[1])
    if use_polish:
        third = search(fine.domain, fine.t1gd, fine.flair, second.mu1, second.mu2, second.seed_index,
                       max_evaluations=polish_evaluations, mu_bounds=mu_bounds, objective=SHARP,
                       simplex_steps=POLISH_SIMPLEX_STEPS, nearest=nearest, parallel=parallel, progress=reports[2])
    stages = [s for s in (first, second, third) if s is not None]
    last, grid = stages[-1], fine if use_fine else coarse
    return Refinement(last.mu1, last.mu2, last.seed_index, "fine" if use_fine else "coarse",
                      tuple(grid.geometry.index_to_ras(last.seed_index).tolist()), first, second, third,
                      sum(s.evaluations for s in stages), sum(s.seconds for s in stages))
