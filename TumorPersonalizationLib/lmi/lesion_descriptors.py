"""The shape regressors' inputs for one lesion on the network's 3 mm grid, by name.

A regressor's weights list the inputs it was trained on by name (:mod:`.shape_regressor`): names of
:data:`.shape_features.FEATURE_NAMES` and :data:`.seed_features.VECTOR_NAMES`, in the order its input layer reads
them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..imaging.volume import Geometry
from .seed_features import VECTOR_NAMES, case_vectors
from .shape_features import FEATURE_NAMES, case_features


@dataclass(frozen=True)
class GridLesion:
    """One lesion on one grid.

    Attributes
    ----------
    labels : (ni, nj, nk) uint8
        0 outside, 1 FLAIR only, 2 T1Gd (:func:`.labels.encode_labels`).
    wm, gm : (ni, nj, nk) float
        The atlas' WM and GM probabilities on the same grid.
    spacing_mm : float
        Isotropic voxel size.
    geometry : Geometry, optional
        The grid in the atlas' space.
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


def _pick(names, base: tuple, values: np.ndarray, what: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(base)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise InputError(f"{what}: inputs {unknown[:3]} are not computed by this version")
    return np.asarray(values)[[index[n] for n in names]]


def features(names, lesion: GridLesion) -> np.ndarray:
    """(len(names),) float64: the shape features ``names`` of one lesion."""
    row = case_features(lesion.labels, lesion.wm, lesion.gm, lesion.spacing_mm)
    return _pick(names, FEATURE_NAMES, row, "shape features").astype(np.float64)


def vectors(names, lesion: GridLesion) -> np.ndarray:
    """The seed vectors ``names`` of one lesion: (len(names), 3) offsets in mm from the core's centroid along the
    grid's index axes."""
    rows = case_vectors(lesion.labels, lesion.wm, lesion.gm, lesion.spacing_mm)
    return _pick(names, VECTOR_NAMES, rows, "seed vectors")
