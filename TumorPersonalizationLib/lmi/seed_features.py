"""Directions in a lesion and its surroundings that point from the enhancing core's centre towards the seed.

Why: a Fisher-Kolmogorov tumor grows ten times faster in white than in grey matter, so its enhancing core extends
further on the white-matter side and the seed sits off the core's centre, away from the white matter; the walls of
the domain (ventricles, skull) push density back and shift the core the other way. The inverse ResNet learns this
through global pooling, which is nearly blind to position, and places the seed 3.2 mm off (validation set, median);
the core's centroid alone is 5.0 mm off. A combination of the vectors below, with coefficients that depend on the
lesion's shape descriptors (:mod:`.shape_regressor`), places it about 2 mm off (docs/methods/lmi.md, "Seed regressor").

Every vector is a weighted centroid minus the core's centroid (:func:`.labels.lesion_centres`, the centre the
network's crop and targets use), in mm, in the order of :data:`VECTOR_NAMES`; a centroid with no weight is the
core's centroid (a zero vector). "lesion" is the FLAIR mask, which contains the T1Gd "core"; depth is the Euclidean
distance to the mask's outside:

- ``lesion``: the lesion's centroid;
- ``core_wm``, ``core_gm``, ``lesion_wm``, ``lesion_gm``: centroids weighted by the WM or GM probability over the
  core or the lesion;
- ``core_depth``, ``core_depth2``, ``lesion_depth``, ``lesion_depth2``: weighted by depth and by depth squared
  (where each mask is deepest);
- ``shell_outside_domain``: the centroid of the voxels just outside the lesion that are outside the solver's domain
  (WM + GM < 0.1), where the tumor meets a wall;
- ``shell_wm``, ``shell_gm``: WM- and GM-weighted over that one-voxel shell;
- ``rim_wm``, ``rim_gm``: over the lesion outside the core;
- ``ball_wm``, ``ball_gm``: over a ball around the core's centre whose radius is twice the core's largest depth (the
  tissue the tumor started in, beyond what it has filled).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..imaging.volume import bounding_box
from .shape_features import DOMAIN_MIN_WM_PLUS_GM

VECTOR_NAMES = (
    "lesion", "core_wm", "core_gm", "lesion_wm", "lesion_gm",
    "core_depth", "core_depth2", "lesion_depth", "lesion_depth2",
    "shell_outside_domain", "shell_wm", "shell_gm", "rim_wm", "rim_gm", "ball_wm", "ball_gm",
)


def case_vectors(labels: np.ndarray, wm: np.ndarray, gm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The :data:`VECTOR_NAMES` of one case: (len(VECTOR_NAMES), 3) float64 offsets from the core's centroid in
    mm, along the grid's index axes. Takes what :func:`.shape_features.case_features` takes (uint8 labels, WM and
    GM probabilities on their grid, the isotropic voxel size in mm)."""
    if not (labels == 2).any():
        raise InputError("the T1Gd mask is empty on this grid: no seed to place")
    # Everything lies within the lesion's box grown by the ball's radius: computing there is ~10x cheaper. The
    # depths are exact already in the box grown by one voxel (its faces are outside the lesion): the nearest
    # outside voxel beyond that box is never nearer than its projection onto the box's faces.
    near = bounding_box(labels >= 1, 1)
    near_core_depth = ndimage.distance_transform_edt(labels[near] == 2)
    near_lesion_depth = ndimage.distance_transform_edt(labels[near] >= 1)
    core_depth_max = near_core_depth.max()
    box = bounding_box(labels >= 1, int(np.ceil(2.0 * core_depth_max)) + 2)
    labels, wm, gm = labels[box], np.asarray(wm[box], np.float64), np.asarray(gm[box], np.float64)
    core, lesion = labels == 2, labels >= 1
    near_in_box = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(near, box))
    core_depth, lesion_depth = np.zeros(labels.shape), np.zeros(labels.shape)
    core_depth[near_in_box], lesion_depth[near_in_box] = near_core_depth, near_lesion_depth
    positions = np.indices(labels.shape, dtype=np.float64).reshape(3, -1)
    centre = positions[:, core.ravel()].mean(axis=1)

    def offset(weights: np.ndarray) -> np.ndarray:
        total = weights.sum()
        return (positions @ weights.ravel()) / total - centre if total > 0 else np.zeros(3)

    shell = ndimage.binary_dilation(lesion) & ~lesion
    rim = lesion & ~core
    ball = np.sum((positions - centre[:, None]) ** 2, axis=0).reshape(labels.shape) <= (2.0 * core_depth_max) ** 2
    weights = (
        lesion, core * wm, core * gm, lesion * wm, lesion * gm,
        core_depth, core_depth ** 2, lesion_depth, lesion_depth ** 2,
        shell & ((wm + gm) < DOMAIN_MIN_WM_PLUS_GM), shell * wm, shell * gm, rim * wm, rim * gm,
        ball * wm, ball * gm,
    )
    return np.stack([offset(np.asarray(w, np.float64)) for w in weights]) * spacing_mm


def seed_vectors(labels: np.ndarray, tissue_wm_gm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """:func:`case_vectors` of many cases: (n, ni, nj, nk) uint8 labels, (2, ni, nj, nk) WM/GM -> (n, V, 3) mm."""
    labels = np.asarray(labels)
    if labels.ndim != 4 or labels.shape[1:] != tissue_wm_gm.shape[1:]:
        raise InputError(f"seed vectors: labels {labels.shape} do not match the tissue grid "
                         f"{tissue_wm_gm.shape[1:]}")
    wm, gm = tissue_wm_gm
    return np.stack([case_vectors(case, wm, gm, float(spacing_mm)) for case in labels])
