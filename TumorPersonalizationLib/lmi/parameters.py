"""Growth parameters as the inverse network sees them: time-independent combinations, scaled to [-1, 1].

One imaging time point determines mu1 = sqrt(Dw T) (mm) and mu2 = sqrt(rho T) (dimensionless), not Dw, rho and T
separately (thesis, chapter 7): c(x, T; Dw, rho) = c(x, 1; Dw T, rho T). To simulate, the front speed
v = 2 sqrt(Dw rho) is fixed at the thesis' value, 200 mm/year, and

    Dw = mu1 v / (2 mu2),   rho = mu2 v / (2 mu1),   T = 2 mu1 mu2 / v.

Any other v gives the same density at time T; only the reported Dw, rho and T change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

FRONT_SPEED_MM_PER_DAY = 200.0 / 365.25
"""v = 2 sqrt(Dw rho) used to turn (mu1, mu2) back into (Dw, rho, T): 200 mm/year (thesis, chapter 7)."""


def to_time_independent(dw_mm2_per_day, rho_per_day, days):
    """(Dw, rho, T) -> (mu1 in mm, mu2 dimensionless); arrays broadcast."""
    dw, rho, t = (np.asarray(a, dtype=np.float64) for a in (dw_mm2_per_day, rho_per_day, days))
    return np.sqrt(dw * t), np.sqrt(rho * t)


def from_time_independent(mu1_mm, mu2, front_speed_mm_per_day: float = FRONT_SPEED_MM_PER_DAY):
    """(mu1, mu2) -> (Dw in mm^2/day, rho in 1/day, T in days) at the front speed v (mm/day)."""
    mu1, mu2 = np.asarray(mu1_mm, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    if np.any(~np.isfinite(mu1)) or np.any(~np.isfinite(mu2)) or np.any(mu1 <= 0) or np.any(mu2 <= 0):
        raise InputError(f"mu1 and mu2 must be positive and finite, got mu1={mu1}, mu2={mu2}")
    v = np.asarray(front_speed_mm_per_day, dtype=np.float64)
    if np.any(~(v > 0)):
        raise InputError(f"front speed must be positive, got {front_speed_mm_per_day} mm/day")
    return mu1 * v / (2.0 * mu2), mu2 * v / (2.0 * mu1), 2.0 * mu1 * mu2 / v


def simulate_time_independent(domain, mu1_mm: float, mu2: float, seed_index, *, parallel: bool = True,
                              progress=None) -> np.ndarray:
    """The density at time T of the tumor with these (mu1, mu2), grown from ``seed_index``.

    Parameters
    ----------
    domain : :class:`~TumorPersonalizationLib.models.fisher_kolmogorov.Domain`
        Solver domain (the network grid or the atlas grid).
    mu1_mm, mu2 : float
        Time-independent parameters (mm, dimensionless).
    seed_index : sequence of 3 float
        Continuous voxel index of ``domain``'s grid.
    parallel, progress : as in ``Domain.simulate``.

    Returns
    -------
    (ni, nj, nk) float32
        Density in [0, 1]. The same for any front speed (module docstring), so the default one is used.
    """
    dw, rho, days = from_time_independent(mu1_mm, mu2)
    return domain.simulate(float(dw), float(rho), float(days), seed_index, parallel=parallel, progress=progress)


@dataclass(frozen=True)
class TargetScaling:
    """Linear map of the network targets (mu1 mm, mu2, seed offset i, j, k from the lesion centre in network-grid
    voxels) to [-1, 1].

    The bounds are those of the training distribution (set in the training config), so a prediction of -1/+1 is
    the edge of what the network has seen.
    """

    lower: tuple
    upper: tuple

    NAMES = ("mu1", "mu2", "seed_offset_i", "seed_offset_j", "seed_offset_k")

    def __post_init__(self):
        lo, hi = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if lo.shape != (5,) or hi.shape != (5,) or np.any(hi <= lo):
            raise InputError(f"target bounds need 5 values with lower < upper, got {self.lower}, {self.upper}")

    def scale(self, targets) -> np.ndarray:
        """(..., 5) natural targets -> (..., 5) in [-1, 1] (float32)."""
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return (2.0 * (np.asarray(targets, dtype=np.float64) - lo) / (hi - lo) - 1.0).astype(np.float32)

    def unscale(self, scaled) -> np.ndarray:
        """(..., 5) network outputs in [-1, 1] -> natural targets (float64)."""
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return lo + (np.asarray(scaled, dtype=np.float64) + 1.0) * 0.5 * (hi - lo)
