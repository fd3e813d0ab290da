"""Optional refinement of the network's estimate: a short Nelder-Mead search that fits the segmentations better.

The thesis proposes it as future work. Objective: 1 - (Dice_T1Gd + Dice_FLAIR) / 2 between the observed masks and
the simulation thresholded at the visibility levels that fit best (searched on a grid over the thesis' ranges,
c_T1Gd in [0.5, 0.85], c_FLAIR in [0.05, 0.5], since the network does not predict them). The Dice is "soft" (the
simulated mask is a steep sigmoid of c - c_threshold, width ``softness``) so the objective varies continuously with
the parameters and the simplex does not stall on plateaus. Search space: log(mu1 mu2), which sets the lesion's size
(the front lies near 2 mu1 mu2 mm from the seed), log(mu1 / mu2), which sets how diffuse its edge is
(sqrt(Dw / rho)), and the seed position (network-grid voxels). Along these axes the objective is closer to
separable than along log mu1, log mu2, so the simplex needs fewer steps. The simulation runs on the network grid,
where one run takes ~0.1-0.3 s.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..errors import InputError
from ..models.fisher_kolmogorov import Domain
from .parameters import from_time_independent

DEFAULT_EVALUATIONS = 300
"""Simulations allowed by default. On 40 test cases the search converged after 143 on average; a cap of 100
(hit in most cases) gave Dice 0.838 / 0.870 / 0.731 at c = 0.01 / 0.1 / 0.8, a cap of 300 0.874 / 0.905 / 0.739."""

T1GD_LEVELS = np.linspace(0.5, 0.85, 8)
FLAIR_LEVELS = np.linspace(0.05, 0.5, 10)


@dataclass(frozen=True)
class Fit:
    """Best visibility levels and the soft Dice they reach."""

    objective: float
    dice_t1gd: float
    dice_flair: float
    uc_t1gd: float
    uc_flair: float


def _best_soft_dice(density: np.ndarray, observed: np.ndarray, levels: np.ndarray, softness: float):
    total_observed = np.count_nonzero(observed)
    best = (-1.0, float(levels[0]))
    for level in levels:
        predicted = 1.0 / (1.0 + np.exp(-(density - level) / softness))
        overlap = float(predicted[observed].sum())
        score = 2.0 * overlap / (float(predicted.sum()) + total_observed)
        best = max(best, (score, float(level)))
    return best


def mask_fit(density: np.ndarray, t1gd: np.ndarray, flair: np.ndarray, softness: float = 0.02) -> Fit:
    """Soft Dice of a density against the two masks at their best visibility levels (arrays on one grid)."""
    dice_t1, uc_t1 = _best_soft_dice(density, t1gd, T1GD_LEVELS, softness)
    dice_fl, uc_fl = _best_soft_dice(density, flair, FLAIR_LEVELS, softness)
    return Fit(1.0 - 0.5 * (dice_t1 + dice_fl), dice_t1, dice_fl, uc_t1, uc_fl)


def _mu(x: np.ndarray) -> tuple[float, float]:
    """(log(mu1 mu2), log(mu1 / mu2), ...) -> (mu1, mu2)."""
    return float(np.exp(0.5 * (x[0] + x[1]))), float(np.exp(0.5 * (x[0] - x[1])))


def refine(domain: Domain, t1gd: np.ndarray, flair: np.ndarray, mu1_mm: float, mu2: float, seed_index, *,
           max_evaluations: int = DEFAULT_EVALUATIONS, mu_bounds=((0.5, 40.0), (0.2, 10.0)), progress=None) -> dict:
    """Nelder-Mead over (log(mu1 mu2), log(mu1 / mu2), seed) from the network's estimate.

    Parameters
    ----------
    domain : Domain
        Solver domain on the grid of the masks (the network grid).
    t1gd, flair : (ni, nj, nk) bool
        Observed masks on that grid (FLAIR contains T1Gd).
    mu1_mm, mu2, seed_index : the starting point (seed as a continuous voxel index of that grid).
    max_evaluations : int
        Simulations allowed (the starting point included).
    mu_bounds : ((mu1_low, mu1_high), (mu2_low, mu2_high))
        The search stays in this box (the network's trained range): outside it, simulations grow large and slow.
    progress : callable(fraction) or None
        Called after each simulation; may raise Cancelled.

    Returns
    -------
    dict
        ``mu1``, ``mu2``, ``seed_index`` (list of 3), ``start`` and ``end`` (Fit as dict), ``evaluations``,
        ``seconds``.
    """
    t1gd, flair = np.asarray(t1gd, bool), np.asarray(flair, bool) | np.asarray(t1gd, bool)
    if not t1gd.any():
        raise InputError("refinement: the T1Gd mask on the network grid is empty")
    start_time = time.perf_counter()
    evaluations = [0]
    fits = {}

    def objective(x):
        key = tuple(np.round(x, 12))
        if key in fits:  # scipy evaluates the first vertex of the initial simplex again
            return fits[key].objective
        mu1, mu2 = _mu(x)
        (mu1_low, mu1_high), (mu2_low, mu2_high) = mu_bounds
        if not (mu1_low <= mu1 <= mu1_high and mu2_low <= mu2 <= mu2_high):
            return 2.0  # outside the trained range: worse than any fit (objective <= 1)
        try:
            domain.check_seed(x[2:])
        except InputError:
            return 2.0  # outside the brain
        evaluations[0] += 1
        if progress is not None:
            progress(min(evaluations[0] / max_evaluations, 1.0))
        dw, rho, days = from_time_independent(mu1, mu2)
        fit = mask_fit(domain.simulate(float(dw), float(rho), float(days), x[2:]), t1gd, flair)
        fits[key] = fit
        return fit.objective

    x0 = np.array([np.log(mu1_mm * mu2), np.log(mu1_mm / mu2), *np.asarray(seed_index, dtype=float)])
    steps = np.array([0.1, 0.2, 1.0, 1.0, 1.0])
    simplex = np.vstack([x0] + [x0 + np.eye(5)[d] * steps[d] for d in range(5)])
    start_fit_value = objective(x0)
    start_fit = fits.get(tuple(np.round(x0, 12)))
    if start_fit is None:
        raise InputError(f"refinement: the starting seed {np.round(seed_index, 1).tolist()} lies outside the brain")
    result = minimize(objective, x0, method="Nelder-Mead",
                      options={"maxfev": max(max_evaluations - 1, 1), "initial_simplex": simplex,
                               "xatol": 0.05, "fatol": 1e-4})
    x = result.x if result.fun <= start_fit_value else x0
    end_fit = fits.get(tuple(np.round(x, 12)), start_fit)
    mu1, mu2 = _mu(x)
    return {"mu1": float(mu1), "mu2": float(mu2), "seed_index": x[2:].tolist(),
            "start": vars(start_fit), "end": vars(end_fit), "evaluations": evaluations[0],
            "seconds": time.perf_counter() - start_time}
