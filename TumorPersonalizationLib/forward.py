"""Forward simulation on images: tissue maps (Volumes) in, density Volume out.

The numerics live in :mod:`TumorPersonalizationLib.models`; this layer handles geometry (seed in RAS mm or voxel
index) and returns results on the tissue maps' grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .imaging.tissue import TissueMaps
from .imaging.volume import Volume
from .models import fisher_kolmogorov


PARAMETER_LIMITS = {"dw_mm2_per_day": 10.0, "rho_per_day": 2.0, "days": 10000.0, "ratio": 1000.0}
"""Upper bounds of what the solver computes in a sensible time (seconds to minutes per run). They are far beyond
the thesis' ranges (Dw <= 1.5 mm^2/day, rho <= 0.2 /day, T <= 1500 days): a value above them is a unit mistake
(cm^2/day for mm^2/day, say) rather than a tumor."""


def check_parameters(**values: float) -> None:
    """InputError unless each value (named as in :data:`PARAMETER_LIMITS`) is finite, > 0 and within its limit."""
    for name, value in values.items():
        limit = PARAMETER_LIMITS[name]
        if not (np.isfinite(value) and 0 < value <= limit):
            raise InputError(f"{name} = {value:g} is outside (0, {limit:g}]: the solver is meant for (0, {limit:g}] "
                             f"(thesis ranges: Dw <= 1.5 mm^2/day, rho <= 0.2 /day, T <= 1500 days)")


@dataclass(frozen=True)
class Seed:
    """Where the tumor starts: exactly one of a RAS position (mm) or a continuous voxel index (i, j, k)."""

    ras_mm: tuple | None = None
    voxel: tuple | None = None

    def index_in(self, tissue: TissueMaps) -> np.ndarray:
        if (self.ras_mm is None) == (self.voxel is None):
            raise InputError("give the seed either in mm (RAS) or as a voxel index, not both or neither")
        if self.ras_mm is not None:
            index = tissue.geometry.ras_to_index(self.ras_mm)
            where = f"seed at RAS {tuple(float(v) for v in self.ras_mm)} mm"
        else:
            index = np.asarray(self.voxel, dtype=np.float64)
            where = f"seed at voxel {tuple(float(v) for v in self.voxel)}"
        if not tissue.geometry.contains_index(index):
            raise InputError(f"{where} lies outside the image ({tissue.geometry.describe()})")
        return index


def simulate(tissue: TissueMaps, dw_mm2_per_day: float, rho_per_day: float, days: float, seed: Seed, *,
             ratio: float = 10.0, progress=None, steps=fisher_kolmogorov.DEFAULT_STEPS) -> Volume:
    """Fisher-Kolmogorov density after ``days`` on the tissue maps' grid (float32 Volume in [0, 1]).

    Parameters outside :data:`PARAMETER_LIMITS` are refused (InputError) before any work.
    """
    check_parameters(dw_mm2_per_day=dw_mm2_per_day, rho_per_day=rho_per_day, days=days, ratio=ratio)
    index = seed.index_in(tissue)
    domain = fisher_kolmogorov.Domain(tissue.wm.array, tissue.gm.array, tissue.geometry.spacing_mm, ratio=ratio)
    try:
        domain.check_seed(index)
    except InputError as exc:
        where = f"RAS {tuple(seed.ras_mm)} mm" if seed.ras_mm is not None else f"voxel {tuple(seed.voxel)}"
        raise InputError(f"seed at {where}: {str(exc).split(': ', 1)[1]}") from None
    density = domain.simulate(dw_mm2_per_day, rho_per_day, days, index, steps=steps, progress=progress)
    return tissue.wm.like(density)
