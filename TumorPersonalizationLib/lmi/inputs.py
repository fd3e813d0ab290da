"""What the inverse network sees: a cube of the network grid centred on the lesion, with its anatomy and position.

The thesis feeds the whole 128^3 brain. On a 2-core CPU we feed a ``crop_size``^3 cube (40 voxels = 120 mm at 3 mm,
which holds every accepted lesion of the validation set) centred on the enhancing core, which costs a quarter of
the whole 64^3 grid. Because a crop no longer tells where it lies, the input carries that explicitly:

    channel 0     0.666 T1Gd + 0.333 FLAIR (the thesis' input)
    channels 1-2  atlas WM and GM probabilities (the anatomy the tumor grew in)
    channels 3-5  the voxel's position on the network grid, i, j, k scaled to [-1, 1]

Voxels of the crop outside the grid are 0 in channels 0-2. The seed is predicted as an offset from the enhancing
core's centre (:func:`.labels.relative_targets`).
"""
from __future__ import annotations

import numpy as np

from .labels import labels_to_input, lesion_centres

N_CHANNELS = 6


def crop_origins(centres: np.ndarray, crop_size: int) -> np.ndarray:
    """(n, 3) lesion centres (voxel index) -> (n, 3) int index of each crop's first voxel."""
    return np.rint(np.asarray(centres)).astype(np.int64) - crop_size // 2


def _crop(array: np.ndarray, origin: np.ndarray, size: int) -> np.ndarray:
    """The ``size``^3 block of the last three axes starting at ``origin``, zero where it leaves the array."""
    shape = np.asarray(array.shape[-3:])
    lo, hi = np.maximum(origin, 0), np.minimum(origin + size, shape)
    out = np.zeros(array.shape[:-3] + (size,) * 3, dtype=array.dtype)
    if np.all(hi > lo):
        src = (...,) + tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = (...,) + tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin))
        out[dst] = array[src]
    return out


def crop_labels(labels: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, ni, nj, nk) uint8 labels -> (label crops (n, s, s, s), crop origins (n, 3), lesion centres (n, 3))."""
    centres = lesion_centres(labels)
    origins = crop_origins(centres, crop_size)
    crops = np.stack([_crop(case, o, crop_size) for case, o in zip(labels, origins)])
    return crops, origins, centres


def assemble(label_crops: np.ndarray, origins: np.ndarray, tissue_wm_gm: np.ndarray) -> np.ndarray:
    """Network input (n, 6, s, s, s) float32 from label crops, their origins and (2, ni, nj, nk) WM/GM maps."""
    n, size = len(label_crops), label_crops.shape[-1]
    grid_shape = np.asarray(tissue_wm_gm.shape[1:])
    out = np.empty((n, N_CHANNELS) + (size,) * 3, dtype=np.float32)
    out[:, 0] = labels_to_input(label_crops)
    steps = np.arange(size)
    for b, origin in enumerate(np.asarray(origins)):
        out[b, 1:3] = _crop(tissue_wm_gm, origin, size)
        for axis in range(3):
            view = [1, 1, 1]
            view[axis] = size
            position = 2.0 * (origin[axis] + steps) / (grid_shape[axis] - 1) - 1.0
            out[b, 3 + axis] = position.reshape(view)
    return out
