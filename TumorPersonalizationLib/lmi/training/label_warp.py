"""Random smooth deformations of label maps: a patient's lesion as it reaches the atlas after a registration.

A tumor that grew in the patient's anatomy and was warped to the atlas does not follow the atlas' white matter
exactly: the registration leaves a smooth residual misalignment of a few mm (``bench/lmi_anatomy.py``). Cases grown
in the atlas lack it; ``bench/lmi_warp.py`` warps the test cases by :func:`random_displacement` to measure how the
estimators that read how the outline lies on the atlas' tissue (:mod:`..shape_features`) degrade. (Training the
shape regressor on warped copies did not help across anatomies and did not ship: docs/methods/lmi.md.)
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...errors import InputError


def random_displacement(shape, amplitude_mm: float, smoothness_mm: float, spacing_mm: float,
                        rng: np.random.Generator) -> np.ndarray:
    """A smooth random displacement field.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    amplitude_mm : float
        Root-mean-square displacement of each component (mm), >= 0.
    smoothness_mm : float
        Standard deviation of the Gaussian that smooths white noise into the field (mm), > 0.
    spacing_mm : float
        Isotropic voxel size (mm).
    rng : numpy.random.Generator

    Returns
    -------
    (3, ni, nj, nk) float32
        Displacement in voxels along i, j, k.
    """
    if amplitude_mm < 0 or smoothness_mm <= 0 or spacing_mm <= 0:
        raise InputError(f"random_displacement: amplitude {amplitude_mm} mm must be >= 0, smoothness "
                         f"{smoothness_mm} mm and spacing {spacing_mm} mm > 0")
    field = np.empty((3, *shape), dtype=np.float32)
    for axis in range(3):
        component = ndimage.gaussian_filter(rng.standard_normal(shape), smoothness_mm / spacing_mm)
        field[axis] = component * (amplitude_mm / spacing_mm / max(float(component.std()), 1e-12))
    return field


def warp_labels(labels: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Pull a label map through a displacement: ``out[x] = labels[x + displacement[:, x]]`` (nearest neighbour,
    edge values beyond the grid).

    Parameters
    ----------
    labels : (ni, nj, nk) integer array
    displacement : (3, ni, nj, nk) float, voxels

    Returns
    -------
    (ni, nj, nk) array of ``labels``' dtype
    """
    labels = np.asarray(labels)
    if displacement.shape != (3, *labels.shape):
        raise InputError(f"warp_labels: displacement {displacement.shape} does not fit labels {labels.shape}")
    coordinates = np.indices(labels.shape, dtype=np.float32) + displacement
    return ndimage.map_coordinates(labels, coordinates, order=0, mode="nearest").astype(labels.dtype)


def displacement_bank(shape, count: int, smoothness_mm: float, spacing_mm: float, seed: int) -> np.ndarray:
    """``count`` fields of :func:`random_displacement` at 1 mm RMS, (count, 3, ni, nj, nk) float32: drawn once and
    scaled per case (smoothing a fresh field costs ~0.1 s, four times the features of a case)."""
    rng = np.random.default_rng(seed)
    return np.stack([random_displacement(shape, 1.0, smoothness_mm, spacing_mm, rng) for _ in range(count)])


def warp_randomly(labels: np.ndarray, bank: np.ndarray, amplitude_mm: tuple, rng: np.random.Generator) -> np.ndarray:
    """``labels`` warped by a field of ``bank`` (1 mm RMS) scaled to an amplitude drawn uniformly from
    ``amplitude_mm`` = (low, high) mm."""
    field = bank[rng.integers(len(bank))] * np.float32(rng.uniform(*amplitude_mm))
    return warp_labels(labels, field)
