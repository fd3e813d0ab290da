"""The Learn-Morph-Infer configuration (``Resources/LMI/config.json``) and the network grid in the atlas."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..resources import resources_dir
from .parameters import TargetScaling

# The imaging modules (SimpleITK) are imported where used: training runs on machines that only have torch/numpy.


FISHER_KOLMOGOROV, MASS_EFFECT = "fisher-kolmogorov", "mass-effect"


def growth_model(config: dict) -> str:
    """The forward model an LMI config's cases grow with: :data:`FISHER_KOLMOGOROV` (no ``model`` section) or
    :data:`MASS_EFFECT` (``{"model": {"name": "mass-effect", "gamma_pa": [low, high]}}``)."""
    name = config.get("model", {}).get("name", FISHER_KOLMOGOROV)
    if name not in (FISHER_KOLMOGOROV, MASS_EFFECT):
        raise InputError(f"LMI config: model.name must be {FISHER_KOLMOGOROV!r} or {MASS_EFFECT!r}, got {name!r}")
    return name


def lmi_dir() -> Path:
    """``Resources/LMI``: config, trained weights and training log."""
    return resources_dir() / "LMI"


def load_config(path=None) -> dict:
    """Read the JSON config (default: the shipped one)."""
    path = Path(path) if path is not None else lmi_dir() / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"LMI config {path}: cannot read it ({error})") from error


def target_scaling(config: dict) -> TargetScaling:
    return TargetScaling(tuple(config["targets"]["lower"]), tuple(config["targets"]["upper"]))


def mu_bounds(config: dict) -> tuple:
    """((mu1_low, mu1_high), (mu2_low, mu2_high)): the targets' trained range, kept off 0 (no growth)."""
    lower, upper = config["targets"]["lower"], config["targets"]["upper"]
    return tuple((max(lower[i], 0.02 * upper[i]), upper[i]) for i in (0, 1))


def network_geometry(atlas, config: dict):
    """The network's input grid: ``config["grid"]`` shape and spacing, centred on the atlas brain's bounding box.

    It uses the atlas' axis directions, so atlas-space images only need resampling (no reorientation) onto it.
    """
    from ..imaging.volume import Geometry

    shape = np.asarray(config["grid"]["shape"], dtype=int)
    spacing = float(config["grid"]["spacing_mm"])
    mask = atlas.brain_mask
    inside = np.argwhere(mask.array > 0.5)
    centre_ras = mask.geometry.index_to_ras((inside.min(axis=0) + inside.max(axis=0)) / 2.0)
    direction = mask.geometry.direction_matrix
    origin = centre_ras - direction @ ((shape - 1) / 2.0 * spacing)
    geometry = Geometry(tuple(shape), (spacing,) * 3, tuple(origin), mask.geometry.direction_ras)
    extent_mm = (inside.max(axis=0) - inside.min(axis=0) + 1) * np.asarray(mask.geometry.spacing_mm)
    if np.any(extent_mm > shape * spacing):
        raise InputError(f"LMI grid {tuple(shape)} x {spacing} mm does not cover the atlas brain "
                         f"({np.round(extent_mm, 1).tolist()} mm)")
    return geometry


@lru_cache(maxsize=2)
def _cached_tissue(config_json: str):
    from ..imaging.atlas import load_atlas
    from ..imaging.tissue import TissueMaps, resample_tissue

    atlas = load_atlas()
    geometry = network_geometry(atlas, json.loads(config_json))
    tissue = resample_tissue(TissueMaps(atlas.wm, atlas.gm, atlas.csf, atlas.t1), geometry,
                             "bundled atlas on the LMI network grid")
    for volume in (tissue.wm, tissue.gm, tissue.csf, tissue.background):
        if volume is not None:
            volume.array.setflags(write=False)  # cached for the process: an in-place edit would reach every caller
    return tissue


def network_tissue(config: dict):
    """Atlas WM/GM/CSF (and T1) on :func:`network_geometry` (anti-aliased; cached; treat as read-only)."""
    return _cached_tissue(json.dumps(config, sort_keys=True))


def network_domain(config: dict):
    """The solver domain on the network grid (atlas WM/GM of :func:`network_tissue`)."""
    from ..models.fisher_kolmogorov import Domain

    tissue = network_tissue(config)
    return Domain(tissue.wm.array, tissue.gm.array, tissue.wm.geometry.spacing_mm)
