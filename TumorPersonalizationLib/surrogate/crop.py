"""The surrogate's field of view: a cube of ``size``^3 voxels of ``crop_spacing_mm`` centred on the seed.

Centring: the seed lies at the cube's centre point, crop index ((size - 1) / 2,) * 3 (between the eight middle voxels
for an even size). Any flip or axis permutation of the cube keeps that point in place, so training can augment with
them and the network never needs to know which way the patient's grid is oriented.

Crop voxel ``m`` (per axis) sits at source index ``seed + (m - (size - 1) / 2) * crop_spacing_mm / source_spacing_mm``
on the tissue's own axes (the crop is aligned with the source grid; its direction is the source's). Sampling is
linear, after a Gaussian low-pass where the crop is coarser than the source (FWHM sqrt(h_crop^2 - h_source^2), the
rule of :func:`TumorPersonalizationLib.imaging.io.resample_smooth`), so a 4 mm crop averages what each voxel covers.
Everything outside the source grid is **zero** (no tissue, no tumor): a crop at the grid's edge is padded, never
wrapped and never extended by edge values.

:func:`paste_crop` is the inverse: it puts a crop's values back on the source grid (linear, zero outside the cube).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

FWHM_PER_SIGMA = 2.355


def extract_box(array: np.ndarray, start, shape) -> np.ndarray:
    """The block ``array[start : start + shape]`` of the last three axes, zero where it leaves the array.

    Parameters
    ----------
    array : (..., ni, nj, nk) array
    start : 3 int
        Index of the block's first voxel; may be negative or beyond the array.
    shape : 3 int

    Returns
    -------
    (..., *shape) array of ``array``'s dtype
    """
    start = np.asarray(start, dtype=int)
    shape = np.asarray(shape, dtype=int)
    grid = np.asarray(array.shape[-3:])
    out = np.zeros(array.shape[:-3] + tuple(shape), dtype=array.dtype)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + shape, grid)
    if np.any(hi <= lo):
        return out  # the block lies entirely outside the array
    source = (Ellipsis,) + tuple(slice(a, b) for a, b in zip(lo, hi))
    target = (Ellipsis,) + tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
    out[target] = array[source]
    return out


def _ratio(source_spacing_mm, crop_spacing_mm: float) -> np.ndarray:
    spacing = np.asarray(source_spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or np.any(spacing <= 0) or not crop_spacing_mm > 0:
        raise InputError(f"crop: spacings must be positive, got source {source_spacing_mm} mm and crop "
                         f"{crop_spacing_mm} mm")
    return float(crop_spacing_mm) / spacing


def crop_positions(seed_index, size: int, source_spacing_mm, crop_spacing_mm: float) -> list:
    """Per axis, the source indices (size,) float64 of the crop's voxel centres."""
    seed = np.asarray(seed_index, dtype=np.float64)
    ratio = _ratio(source_spacing_mm, crop_spacing_mm)
    offsets = np.arange(size) - (size - 1) / 2.0
    return [seed[a] + offsets * ratio[a] for a in range(3)]


def smoothing_sigma(source_spacing_mm, crop_spacing_mm: float) -> np.ndarray:
    """Gaussian sigma (source voxels, per axis) that low-passes the source before sampling the coarser crop."""
    spacing = np.asarray(source_spacing_mm, dtype=np.float64)
    fwhm = np.sqrt(np.maximum(float(crop_spacing_mm) ** 2 - spacing ** 2, 0.0))
    return fwhm / FWHM_PER_SIGMA / spacing


def linear_along(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``array`` at fractional ``positions`` along one axis, edge values beyond its ends.

    Applied along the three axes in turn it is trilinear interpolation on the tensor-product grid of the three
    position arrays (the crop is aligned with the source grid), at a fraction of ``ndimage.map_coordinates``' cost.
    """
    n = array.shape[axis]
    low = np.floor(positions).astype(int)
    weight = (positions - low).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    below = np.take(array, np.clip(low, 0, n - 1), axis=axis)
    above = np.take(array, np.clip(low + 1, 0, n - 1), axis=axis)
    return below + weight * (above - below)


def sample_crop(array: np.ndarray, seed_index, size: int, source_spacing_mm, crop_spacing_mm: float, *,
                smooth: bool = True) -> np.ndarray:
    """The ``size``^3 crop of one or more maps centred on the seed (module docstring), zero outside the grid.

    Parameters
    ----------
    array : (..., ni, nj, nk) float array
        Maps on the source grid (e.g. (3, ni, nj, nk) WM, GM, CSF or one density).
    seed_index : 3 float
        Seed position as a continuous voxel index of the source grid.
    size : int
        Crop edge in voxels.
    source_spacing_mm : 3 float
        Source voxel size along i, j, k (mm).
    crop_spacing_mm : float
        Crop voxel size (mm, isotropic).
    smooth : bool
        Low-pass first where the crop is coarser (False when the caller has already smoothed the whole map once).

    Returns
    -------
    (..., size, size, size) float32
    """
    array = np.asarray(array, dtype=np.float32)
    positions = crop_positions(seed_index, size, source_spacing_mm, crop_spacing_mm)
    sigma = smoothing_sigma(source_spacing_mm, crop_spacing_mm) if smooth else np.zeros(3)
    margin = np.ceil(4.0 * sigma).astype(int) + 1  # the Gaussian's reach, plus one for linear interpolation
    start = np.array([int(np.floor(p[0])) for p in positions]) - margin
    stop = np.array([int(np.ceil(p[-1])) + 1 for p in positions]) + margin
    region = extract_box(array, start, stop - start)
    lead = region.shape[:-3]
    region = region.reshape((-1,) + region.shape[-3:])
    if np.any(sigma > 0.1):
        # The region is zero-padded where it leaves the grid: mode="constant" keeps zero tissue / tumor there.
        region = np.stack([ndimage.gaussian_filter(block, sigma, mode="constant", cval=0.0) for block in region])
    for axis, (p, s) in enumerate(zip(positions, start)):
        region = linear_along(region, p - s, axis + 1)  # every position lies inside the region (the margin)
    return region.reshape(lead + (size,) * 3)


def paste_crop(crop: np.ndarray, seed_index, shape, source_spacing_mm, crop_spacing_mm: float, *,
               out: np.ndarray | None = None) -> np.ndarray:
    """A crop's values on the source grid: linear interpolation inside the crop's cube, zero outside it.

    Parameters
    ----------
    crop : (size, size, size) float array
    seed_index : 3 float
        The seed the crop was centred on (continuous source index).
    shape : 3 int
        Source grid shape.
    source_spacing_mm : 3 float
    crop_spacing_mm : float
    out : (ni, nj, nk) float32 array of zeros, optional
        Written in place and returned (saves allocating a full grid per crop).

    Returns
    -------
    (ni, nj, nk) float32
    """
    crop = np.asarray(crop, dtype=np.float32)
    size = crop.shape[0]
    if crop.shape != (size,) * 3:
        raise InputError(f"paste_crop: expected a cubic crop, got shape {crop.shape}")
    seed = np.asarray(seed_index, dtype=np.float64)
    ratio = _ratio(source_spacing_mm, crop_spacing_mm)
    half_extent = size / 2.0 * ratio  # the cube's faces, in source voxels from the seed
    lo = np.maximum(np.ceil(seed - half_extent).astype(int), 0)
    hi = np.minimum(np.floor(seed + half_extent).astype(int) + 1, np.asarray(shape))
    if out is None:
        out = np.zeros(tuple(int(n) for n in shape), dtype=np.float32)
    if np.any(hi <= lo):
        return out
    axes = [(np.arange(a, b) - seed[k]) / ratio[k] + (size - 1) / 2.0 for k, (a, b) in enumerate(zip(lo, hi))]
    inside = [(x >= -0.5) & (x <= size - 0.5) for x in axes]
    axes = [x[keep] for x, keep in zip(axes, inside)]
    lo = [a + int(np.argmax(keep)) for a, keep in zip(lo, inside)]
    if any(len(x) == 0 for x in axes):
        return out
    values = crop
    for axis, x in enumerate(axes):
        values = linear_along(values, x, axis)  # edge values only over the cube's outer half voxel
    out[tuple(slice(a, a + len(x)) for a, x in zip(lo, axes))] = values
    return out
