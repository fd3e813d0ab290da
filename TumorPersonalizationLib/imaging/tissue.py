"""Tissue probability maps (WM, GM, optional CSF) on one grid, from files or from the bundled atlas."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..validation import unit_interval
from .atlas import load_atlas
from .io import read_volume, resample_smooth
from .volume import Geometry, Volume, require_same_grid


@dataclass(frozen=True)
class TissueMaps:
    """WM / GM (/ CSF) probabilities as float32 in [0, 1] on one grid, plus an optional image to draw on."""

    wm: Volume
    gm: Volume
    csf: Volume | None = None
    background: Volume | None = None
    source: str = ""

    @property
    def geometry(self) -> Geometry:
        return self.wm.geometry


SUM_TOLERANCE = 0.05
"""How far WM + GM + CSF may exceed 1 (rounding of stored maps, interpolation) before the maps are refused."""


def check_probability_map(volume: Volume, name: str) -> Volume:
    """Return the map as float32, or raise InputError if it has NaN/inf or values outside [0, 1]."""
    return volume.like(unit_interval(volume.array, name, "probabilities"))


def load_tissue_maps(wm_path=None, gm_path=None, csf_path=None, t1_path=None) -> TissueMaps:
    """Tissue maps from NIfTI/NRRD files, or the bundled atlas when no WM/GM path is given.

    WM and GM come together (both or neither); CSF and T1 are optional and must share the WM grid.
    """
    if wm_path is None and gm_path is None:
        if csf_path is not None:
            raise InputError("--csf was given without --wm and --gm; give all tissue maps or none (atlas)")
        atlas = load_atlas()
        background = atlas.t1 if t1_path is None else None
        maps = TissueMaps(atlas.wm, atlas.gm, atlas.csf, background, source="bundled ICBM152 2009a atlas (1.5 mm)")
    elif wm_path is None or gm_path is None:
        raise InputError("give both --wm and --gm (or neither, to use the bundled atlas)")
    else:
        paths = {"wm": wm_path, "gm": gm_path, "csf": csf_path}
        volumes = {k: read_volume(p, f"--{k}") if p is not None else None for k, p in paths.items()}
        maps = tissue_maps_from_volumes(**volumes, names={k: f"--{k} {p}" for k, p in paths.items()},
                                        source=f"{wm_path}, {gm_path}")
    if t1_path is not None:
        t1 = read_volume(t1_path, "--t1")
        require_same_grid(maps.wm, "the tissue maps", t1, f"--t1 {t1_path}")
        maps = TissueMaps(maps.wm, maps.gm, maps.csf, t1.like(t1.array.astype(np.float32)), maps.source)
    return maps


def tissue_maps_from_volumes(wm: Volume, gm: Volume, csf: Volume | None = None, *, names: dict | None = None,
                             source: str = "") -> TissueMaps:
    """Check WM / GM (/ CSF) probability maps (finite, in [0, 1], one grid) and bundle them.

    ``names`` maps "wm", "gm", "csf" to how error messages name each input (default: "WM map", ...).
    """
    names = {"wm": "WM map", "gm": "GM map", "csf": "CSF map", **(names or {})}
    wm = check_probability_map(wm, names["wm"])
    gm = check_probability_map(gm, names["gm"])
    require_same_grid(wm, names["wm"], gm, names["gm"])
    if csf is not None:
        csf = check_probability_map(csf, names["csf"])
        require_same_grid(wm, names["wm"], csf, names["csf"])
    total = wm.array + gm.array + (csf.array if csf is not None else 0.0)
    worst = np.unravel_index(int(np.argmax(total)), total.shape)
    if total[worst] > 1.0 + SUM_TOLERANCE:
        given = ", ".join(names[k] for k, v in (("wm", wm), ("gm", gm), ("csf", csf)) if v is not None)
        raise InputError(f"{given}: the tissue probabilities add up to {total[worst]:.3g} at voxel "
                         f"{tuple(int(i) for i in worst)}; WM + GM + CSF must be at most 1 (are two maps swapped, "
                         f"or one given twice?)")
    return TissueMaps(wm, gm, csf, None, source=source)


def regrid_geometry(g: Geometry, spacing_mm: float) -> Geometry:
    """The same field of view as ``g`` on an isotropic grid of ``spacing_mm``."""
    extent = np.asarray(g.shape) * np.asarray(g.spacing_mm)
    shape = np.maximum(np.round(extent / spacing_mm).astype(int), 1)
    corner = g.index_to_ras(-0.5 * np.ones(3))
    origin = corner + g.direction_matrix @ np.full(3, spacing_mm / 2.0)
    return Geometry(shape, (spacing_mm,) * 3, origin, g.direction_ras)


def resample_tissue(tissue: TissueMaps, geometry: Geometry, source: str) -> TissueMaps:
    """Tissue maps (and background) on ``geometry``: anti-aliased, WM + GM + CSF kept <= 1."""
    def one(v):
        return None if v is None else resample_smooth(v, geometry)

    wm, gm, csf = one(tissue.wm), one(tissue.gm), one(tissue.csf)
    total = wm.array + gm.array + (csf.array if csf is not None else 0.0)
    scale = 1.0 / np.maximum(total, 1.0)  # interpolation can push the sum a hair above 1
    wm, gm = wm.like(np.clip(wm.array * scale, 0, 1)), gm.like(np.clip(gm.array * scale, 0, 1))
    csf = csf.like(np.clip(csf.array * scale, 0, 1)) if csf is not None else None
    return TissueMaps(wm, gm, csf, one(tissue.background), source)


def regrid_tissue(tissue: TissueMaps, spacing_mm: float) -> TissueMaps:
    """Tissue maps (and background) on an isotropic grid of ``spacing_mm``, e.g. the 3 mm grid of fast runs."""
    return resample_tissue(tissue, regrid_geometry(tissue.geometry, spacing_mm),
                           f"{tissue.source} on a {spacing_mm:g} mm grid")
