"""Dataset cases grown again on the atlas' own grid, as a patient's masks reach the network.

The dataset (:mod:`.dataset`) simulates on the 3 mm network grid, eight times cheaper than the atlas' 1.5 mm grid.
A patient's masks instead are warped onto the atlas grid and taken from there onto the network grid
(:func:`..grids.lesion_on_network_grid`), and the same parameters grow a slightly different tumor at 1.5 mm: the
3 mm grid smears grey-matter sheets thinner than a voxel into white matter, so the tumor diffuses faster there
(FLAIR volume 7 % larger, median of 200 test cases). Estimators that read the masks' shape see that difference.

:func:`grow_on_atlas` regrows a stored case from its parameters on the atlas grid, thresholds it at its own
visibility levels and takes the masks to the network grid the pipeline's way. ``bench/lmi.py`` scores the test set
so, and ``Scripts/lmi_grow_atlas.py`` stores the training and validation labels so (:func:`labels_path`) for the
shape regressors (:mod:`..shape_regressor`).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...imaging.atlas import Atlas, load_atlas
from ..config import network_domain, network_geometry
from ..grids import FitGrid, atlas_fit_grid, lesion_on_network_grid
from ..labels import encode_labels


@dataclass
class AtlasGrids:
    """The atlas, and the network (3 mm) and atlas (1.5 mm) grids with their simulation domains (for ``config``)."""
    atlas: Atlas
    net: FitGrid
    fine: FitGrid
    config: dict


def atlas_grids(config: dict) -> AtlasGrids:
    atlas = load_atlas()
    return AtlasGrids(atlas, FitGrid(network_domain(config), network_geometry(atlas, config), None, None),
                      atlas_fit_grid(atlas), config)


def grow_on_atlas(grids: AtlasGrids, parameters: np.ndarray, parallel: bool = True) -> tuple:
    """Regrow one dataset case on the atlas grid.

    Parameters
    ----------
    grids : AtlasGrids
    parameters : (8,) float
        A row of a shard's ``parameters`` (:data:`.dataset.PARAMETER_NAMES`: Dw mm^2/day, rho 1/day, T days, seed
        as a network-grid index, c_T1Gd, c_FLAIR).
    parallel : bool
        Let the solver use all cores (False inside a process pool).

    Returns
    -------
    truth : (atlas grid) float density
    network : GridLesion
        The masks at the case's levels taken onto the network grid the pipeline's way
        (:func:`..grids.lesion_on_network_grid`).
    atlas_labels : (atlas grid) uint8
        The masks on the atlas grid: 2 where truth >= c_T1Gd, 1 where only >= c_FLAIR.
    """
    p = np.asarray(parameters, dtype=np.float64)
    truth = grids.fine.domain.simulate(p[0], p[1], p[2], grids.fine.seed_from(grids.net, p[3:6]), parallel=parallel)
    t1gd, flair = truth >= p[6], truth >= p[7]
    like = grids.atlas.wm.like
    network = lesion_on_network_grid(like(t1gd.astype(np.uint8)), like(flair.astype(np.uint8)), grids.config)
    return truth, network, encode_labels(t1gd, flair)


def labels_path(folder, split: str, index: int) -> Path:
    """Where ``Scripts/lmi_grow_atlas.py`` stores the atlas-grown labels of a dataset shard: ``labels``, (cases,
    ni, nj, nk) uint8 on the network grid."""
    return Path(folder) / f"atlas_labels_{split}_{index:05d}.npz"


def load_labels(folder, split: str, index: int, cases: int) -> np.ndarray:
    """The atlas-grown labels of shard ``index`` on the network grid (:func:`labels_path`); InputError if missing
    or of another size."""
    path = labels_path(folder, split, index)
    if not path.exists():
        raise InputError(f"{path} is missing: make it with Scripts/lmi_grow_atlas.py --data {folder}")
    try:
        with np.load(path) as saved:
            labels = saved["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"atlas-grown labels {path}: cannot read them ({error})") from error
    if len(labels) != cases:
        raise InputError(f"atlas-grown labels {path}: {len(labels)} cases, the shard holds {cases}; remove the "
                         "file and make it again")
    return labels
