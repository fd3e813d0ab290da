"""Forward simulation on images: tissue maps (Volumes) in, density Volume out.

The numerics live in :mod:`TumorPersonalizationLib.models`; this layer handles geometry (seed in RAS mm or voxel
index) and returns results on the tissue maps' grid. :func:`simulate` runs the Fisher-Kolmogorov model,
:func:`simulate_mass_effect` the mass-effect model with the same call plus gamma.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .imaging.tissue import TissueMaps
from .imaging.volume import Volume
from .models import fisher_kolmogorov, mass_effect


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
    _check_seed(domain, index, seed)
    density = domain.simulate(dw_mm2_per_day, rho_per_day, days, index, steps=steps, progress=progress)
    return tissue.wm.like(density)


def _check_seed(domain: fisher_kolmogorov.Domain, index, seed: Seed) -> None:
    try:
        domain.check_seed(index)
    except InputError as exc:
        where = f"RAS {tuple(seed.ras_mm)} mm" if seed.ras_mm is not None else f"voxel {tuple(seed.voxel)}"
        raise InputError(f"seed at {where}: {str(exc).split(': ', 1)[1]}") from None


@dataclass(frozen=True)
class DisplacementField:
    """A displacement field on a voxel grid, stored the way ITK and Slicer use displacement-field transforms.

    Attributes
    ----------
    ras_mm : np.ndarray, float64, shape (ni, nj, nk, 3)
        Per voxel the RAS vector (mm) from a point of the deformed anatomy to where that tissue was before the tumor
        grew: the resampling convention, so resampling a healthy image (the atlas, a T1) through it shows the
        predicted shift. The tissue's own displacement is the negative.
    geometry : Geometry
    """

    ras_mm: np.ndarray
    geometry: object

    def to_sitk(self):
        """A SimpleITK vector image (float64, LPS components): what ``sitk.DisplacementFieldTransform`` takes."""
        import SimpleITK as sitk

        from .imaging.io import apply_geometry_to_sitk
        from .imaging.volume import LPS_TO_RAS

        lps = self.ras_mm @ LPS_TO_RAS.T  # LPS_TO_RAS is its own inverse
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(lps, (2, 1, 0, 3))), isVector=True)
        apply_geometry_to_sitk(image, self.geometry)
        return image

    def resampled(self, geometry) -> "DisplacementField":
        """The same field on another grid of the same space (each RAS component linearly; 0 outside this grid)."""
        from .imaging.io import resample

        components = [resample(Volume(np.ascontiguousarray(self.ras_mm[..., axis], dtype=np.float32), self.geometry),
                               geometry, "linear").array for axis in range(3)]
        return DisplacementField(np.stack(components, axis=-1).astype(np.float64), geometry)

    def write(self, path) -> Path:
        """Write as a 3-component vector image (NIfTI / NRRD / MetaImage), atomically."""
        import SimpleITK as sitk

        from .files import atomic_path
        from .imaging.io import SUPPORTED_SUFFIXES

        path = Path(path)
        suffix = next((s for s in SUPPORTED_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is None:
            raise InputError(f"output {path}: unsupported extension (use one of {', '.join(SUPPORTED_SUFFIXES)})")
        with atomic_path(path, suffix) as tmp:
            sitk.WriteImage(self.to_sitk(), tmp, True)
        return path


@dataclass(frozen=True)
class MassEffectOutput:
    """What :func:`simulate_mass_effect` returns: the density (float32 Volume in [0, 1]), the displacement field,
    the deformed tissue maps on the same grid, and the solver's work (``stats``, see
    :class:`~TumorPersonalizationLib.models.mass_effect.MassEffectResult`)."""

    density: Volume
    displacement: DisplacementField
    tissue: TissueMaps
    stats: dict


def simulate_mass_effect(tissue: TissueMaps, dw_mm2_per_day: float, rho_per_day: float, days: float, seed: Seed, *,
                         gamma_pa: float, ratio: float = 10.0, materials: dict | None = None, progress=None,
                         steps=fisher_kolmogorov.DEFAULT_STEPS) -> MassEffectOutput:
    """The mass-effect model after ``days``: :func:`simulate`'s call plus ``gamma_pa`` (Pa) and optional
    ``materials`` ({"wm" | "gm" | "csf" | "tumor": :class:`~TumorPersonalizationLib.models.mass_effect.Material`}).

    Needs the CSF map (the soft tissue the brain yields into). gamma = 0 gives the Fisher-Kolmogorov density.
    Parameters outside their limits are refused (InputError) before any work.
    """
    check_parameters(dw_mm2_per_day=dw_mm2_per_day, rho_per_day=rho_per_day, days=days, ratio=ratio)
    gamma = mass_effect.check_gamma(gamma_pa)
    materials = mass_effect.materials_with(materials)
    if tissue.csf is None:
        raise InputError("the mass-effect model needs a CSF map (--csf): without it the ventricles and sulci "
                         "would be rigid")
    index = seed.index_in(tissue)
    domain = mass_effect.MassEffectDomain(tissue.wm.array, tissue.gm.array, tissue.csf.array,
                                          tissue.geometry.spacing_mm, ratio=ratio, materials=materials)
    _check_seed(domain.fk, index, seed)
    result = domain.simulate(dw_mm2_per_day, rho_per_day, days, index, gamma, steps=steps, progress=progress)
    return mass_effect_output(result, tissue.geometry, tissue.source, tissue.background)


def mass_effect_output(result: mass_effect.MassEffectResult, geometry, source: str,
                       background: Volume | None = None) -> MassEffectOutput:
    """A mass-effect run's arrays (one output time) on ``geometry`` (the grid of the maps it grew in, described
    by ``source``) as volumes: the density, the displacement field in the resampling convention and the deformed
    maps (with ``background``)."""
    # Array-axis components (mm) to RAS: the direction matrix's columns are the axes' RAS directions.
    tissue_ras = np.einsum("ra,a...->...r", geometry.direction_matrix, result.displacement_mm)
    deformed = TissueMaps(Volume(result.wm, geometry), Volume(result.gm, geometry), Volume(result.csf, geometry),
                          background, source=f"{source}, deformed by the mass-effect model")
    return MassEffectOutput(Volume(result.density, geometry), DisplacementField(-tissue_ras, geometry), deformed,
                            result.stats)
