"""The lesion as the Learn-Morph-Infer estimators read it: one uint8 label map per case, its centre, and seeds
relative to that centre.

Labels: 0 outside, 1 FLAIR only, 2 T1Gd (which lies inside FLAIR). The network's image channel is
0.666 T1Gd + 0.333 FLAIR (thesis, chapter 7): 0, 0.333 (FLAIR only) or 0.999 (T1Gd).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

T1GD_WEIGHT, FLAIR_WEIGHT = 0.666, 0.333


def encode_labels(t1gd, flair) -> np.ndarray:
    """Binary masks -> uint8 labels (0 outside, 1 FLAIR only, 2 T1Gd); T1Gd counts as FLAIR too."""
    t1gd = np.asarray(t1gd) > 0
    return (t1gd | (np.asarray(flair) > 0)).astype(np.uint8) + t1gd.astype(np.uint8)


def labels_to_input(labels) -> np.ndarray:
    """uint8 labels (..., ni, nj, nk) -> float32 network input 0.666 T1Gd + 0.333 FLAIR, same shape."""
    lookup = np.array([0.0, FLAIR_WEIGHT, T1GD_WEIGHT + FLAIR_WEIGHT], dtype=np.float32)
    return lookup[np.asarray(labels, dtype=np.uint8)]


def lesion_centres(labels: np.ndarray) -> np.ndarray:
    """(n, ni, nj, nk) labels -> (n, 3) mean voxel index of the T1Gd voxels (of FLAIR where T1Gd is empty)."""
    labels = np.asarray(labels)
    grids = np.indices(labels.shape[1:], dtype=np.float64).reshape(3, -1)
    centres = np.empty((len(labels), 3))
    for n, case in enumerate(labels.reshape(len(labels), -1)):
        core = case == 2
        if not core.any():
            core = case > 0
        if not core.any():
            raise InputError("a case has empty T1Gd and FLAIR masks: nothing to infer from")
        centres[n] = grids[:, core].mean(axis=1)
    return centres


def relative_targets(targets: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Natural targets (mu1, mu2, seed i, j, k) with the seed as an offset (voxels) from the lesion centre: what
    the network predicts.

    The seed lies close to the enhancing core's centre; learning the offset is a much easier, translation-
    invariant task than learning the absolute position through global pooling.
    """
    out = np.array(targets, dtype=np.float32, copy=True)
    out[:, 2:5] -= centres
    return out


def absolute_targets(relative: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relative_targets`."""
    out = np.array(relative, dtype=np.float64, copy=True)
    out[:, 2:5] += centres
    return out
