"""From posterior samples to what a report and a plan need: derived parameters, summaries with units, and the
posterior-predictive densities of a few draws."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..imaging.tissue import TissueMaps
from ..models.fisher_kolmogorov import Domain

UNITS = {"Dw": "mm^2/day", "rho": "1/day", "T": "days", "x": "mm (RAS)", "y": "mm (RAS)", "z": "mm (RAS)",
         "uc_T1Gd": "density", "uc_FLAIR": "density", "sigma_alpha": "density", "b": "-", "sigma": "-",
         "mu1": "mm", "mu2": "-", "v": "mm/day"}


def with_derived(names, x: np.ndarray):
    """Append mu1 = sqrt(Dw T), mu2 = sqrt(rho T) and v = 2 sqrt(Dw rho) to (n, p) natural samples."""
    col = {n: x[:, i] for i, n in enumerate(names)}
    mu1 = np.sqrt(col["Dw"] * col["T"])
    mu2 = np.sqrt(col["rho"] * col["T"])
    v = 2.0 * np.sqrt(col["Dw"] * col["rho"])
    return tuple(names) + ("mu1", "mu2", "v"), np.column_stack([x, mu1, mu2, v])


def summarise(names, x: np.ndarray, map_index: int) -> dict:
    """Each parameter's MAP, mean, median and 95 % interval with its unit."""
    out = {}
    for d, name in enumerate(names):
        lo, med, hi = np.percentile(x[:, d], [2.5, 50, 97.5])
        out[name] = {"map": float(x[map_index, d]), "mean": float(x[:, d].mean()), "median": float(med),
                     "ci95": [float(lo), float(hi)], "unit": UNITS.get(name, "")}
    return out


def simulate_parameter_sets(tissue: TissueMaps, natural: np.ndarray, names, ratio: float) -> np.ndarray:
    """Densities (k, ni, nj, nk) on the tissue grid for k natural-unit parameter sets (one core each, in threads)."""
    col = {n: natural[:, i] for i, n in enumerate(names)}
    domain = Domain(tissue.wm.array, tissue.gm.array, tissue.geometry.spacing_mm, ratio=ratio)
    seeds = tissue.geometry.ras_to_index(np.column_stack([col["x"], col["y"], col["z"]]))
    return domain.simulate_batch(col["Dw"], col["rho"], col["T"], seeds)


def posterior_draws(samples: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` of the posterior ``samples`` (m, d) without replacement, simulating equal ones only once.

    TMCMC's resampling and rejected moves repeat a sample, and the repeats carry its posterior weight: drawing
    among the distinct samples only would flatten the posterior.

    Returns
    -------
    distinct : (k,) int
        Indices into ``samples`` of the distinct draws (the ones to simulate).
    repeat : (min(n, m),) int
        For each draw, its position in ``distinct``: ``simulated[repeat]`` is the list of drawn densities.
    """
    draws = rng.choice(len(samples), size=min(n, len(samples)), replace=False)
    _, first, repeat = np.unique(samples[draws], axis=0, return_index=True, return_inverse=True)
    return draws[first], np.ravel(repeat)


@dataclass(frozen=True)
class Predictive:
    """Posterior-predictive densities on the whole tissue grid."""

    map_density: np.ndarray    # (ni, nj, nk): the MAP parameters' density
    draws: np.ndarray          # (n, ni, nj, nk): the n posterior draws' densities (repeated samples repeated)
    distinct: int              # how many distinct draws were simulated

    @property
    def simulations(self) -> int:
        return 1 + self.distinct


def posterior_predictive(tissue: TissueMaps, samples: np.ndarray, natural: np.ndarray, map_index: int, names,
                         n_draws: int, ratio: float, seed: int) -> Predictive:
    """The MAP's density and ``n_draws`` posterior draws' densities (``samples``: the sampler's coordinates, to
    find repeats; ``natural``: the same samples in natural units, columns ``names``)."""
    distinct, repeat = posterior_draws(samples, n_draws, np.random.default_rng(seed))
    chosen = np.concatenate([[map_index], distinct])
    densities = simulate_parameter_sets(tissue, natural[chosen], names, ratio)
    return Predictive(densities[0], densities[1:][repeat], len(distinct))
