"""The shape regressors' inputs for one lesion seen on the network's 3 mm grid and on the atlas' 1.5 mm grid.

Why two grids: on the 3 mm network grid the FLAIR rim around the enhancing core is 1-3 voxels wide; the pipeline
holds the warped masks on the atlas grid before it takes them there, and the same descriptors read from both grids
predict mu1, mu2 and the seed better than from either alone (docs/lmi_notes.md, "Shape features on both grids").

A regressor's weights list the inputs it was trained on by name (:mod:`.shape_regressor`): a name of
:data:`.shape_features.FEATURE_NAMES` or :data:`.seed_features.VECTOR_NAMES` is read from the network-grid masks,
the same name with the prefix :data:`ATLAS_PREFIX` from the atlas-grid masks. Weights trained on the network grid
alone therefore keep working, and nothing is computed on a grid no input needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..imaging.volume import Geometry
from .seed_features import VECTOR_NAMES, case_vectors
from .shape_features import FEATURE_NAMES, case_features

ATLAS_PREFIX = "atlas:"
"""Marks an input read from the masks on the atlas grid."""
GRIDS = ("network", "atlas")


@dataclass(frozen=True)
class GridLesion:
    """One lesion on one grid.

    Attributes
    ----------
    labels : (ni, nj, nk) uint8
        0 outside, 1 FLAIR only, 2 T1Gd (:func:`.dataset.encode_labels`).
    wm, gm : (ni, nj, nk) float
        The atlas' WM and GM probabilities on the same grid.
    spacing_mm : float
        Isotropic voxel size.
    geometry : Geometry, optional
        The grid in the atlas' space (needed to carry a seed to another grid).
    """
    labels: np.ndarray
    wm: np.ndarray
    gm: np.ndarray
    spacing_mm: float
    geometry: Geometry | None = None

    def __post_init__(self):
        if not np.shape(self.labels) == np.shape(self.wm) == np.shape(self.gm):
            raise InputError(f"lesion labels {np.shape(self.labels)} do not match the tissue grid "
                             f"{np.shape(self.wm)}")

    def core_centre(self) -> np.ndarray:
        """(3,) mean index of the T1Gd voxels (the origin of every seed vector)."""
        core = np.argwhere(self.labels == 2)
        if not len(core):
            raise InputError("the T1Gd mask is empty: no seed to place")
        return core.mean(axis=0)


def feature_names(grids) -> tuple:
    """Names of the shape features read from ``grids`` (a sequence of :data:`GRIDS`)."""
    return _names(FEATURE_NAMES, grids)


def vector_names(grid: str) -> tuple:
    """Names of the seed vectors read from ``grid`` (one of :data:`GRIDS`)."""
    return _names(VECTOR_NAMES, [grid])


def _names(base: tuple, grids) -> tuple:
    unknown = set(grids) - set(GRIDS)
    if unknown or not len(grids):
        raise InputError(f"descriptor grids must be among {GRIDS}, got {list(grids)}")
    return sum((base if grid == "network" else tuple(ATLAS_PREFIX + n for n in base) for grid in GRIDS
                if grid in grids), ())


def grids_of(names, base: tuple, what: str) -> list:
    """The grids a list of input names reads from; InputError for a name this version does not compute."""
    known = {n: "network" for n in base} | {ATLAS_PREFIX + n: "atlas" for n in base}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"{what}: inputs {unknown[:3]} are not computed by this version")
    return [grid for grid in GRIDS if grid in {known[n] for n in names}]


def _lesion_on(grid: str, network: GridLesion, atlas: GridLesion | None) -> GridLesion:
    if grid == "atlas" and atlas is None:
        raise InputError("these regressor weights read the lesion on the atlas grid, and none was given")
    return network if grid == "network" else atlas


def features(names, network: GridLesion, atlas: GridLesion | None = None) -> np.ndarray:
    """(len(names),) float64: the shape features ``names`` of one lesion given on the network grid (and the atlas
    grid, needed when a name has the :data:`ATLAS_PREFIX`)."""
    values = {}
    for grid in grids_of(names, FEATURE_NAMES, "shape features"):
        lesion = _lesion_on(grid, network, atlas)
        prefix = "" if grid == "network" else ATLAS_PREFIX
        row = case_features(lesion.labels, lesion.wm, lesion.gm, lesion.spacing_mm)
        values.update(zip((prefix + n for n in FEATURE_NAMES), row))
    return np.array([values[n] for n in names], dtype=np.float64)


def vectors(names, network: GridLesion, atlas: GridLesion | None = None) -> tuple[np.ndarray, str]:
    """The seed vectors ``names`` of one lesion: (len(names), 3) offsets in mm from the core's centroid along the
    index axes of the grid they are read from, and that grid's name (all names read from one grid)."""
    grids = grids_of(names, VECTOR_NAMES, "seed vectors")
    if len(grids) != 1:
        raise InputError(f"seed vectors must all come from one grid, these come from {grids}")
    lesion = _lesion_on(grids[0], network, atlas)
    row = dict(zip(VECTOR_NAMES, case_vectors(lesion.labels, lesion.wm, lesion.gm, lesion.spacing_mm)))
    return np.stack([row[n.removeprefix(ATLAS_PREFIX)] for n in names]), grids[0]
