"""A 3D image with its geometry: the array type used everywhere in the Lib.

Conventions (see README, "Coordinates"):

- ``Volume.array`` is indexed ``array[i, j, k]`` in ITK / NIfTI voxel order (``i`` fastest-varying on disk,
  first here). This is the transpose of what ``SimpleITK.GetArrayFromImage`` and Slicer's ``arrayFromVolume`` return.
- Physical positions are millimetres in **RAS** (+x towards the patient's Right, +y Anterior, +z Superior),
  the convention of Slicer's GUI, NIfTI's sform and MNI coordinates.
  ITK works in LPS; :mod:`TumorPersonalizationLib.imaging.io` converts at the file boundary.
- ``ras = origin_ras_mm + direction_ras @ (spacing_mm * ijk)``; ``direction_ras`` columns are the unit vectors of
  the i, j, k axes in RAS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits in physical space.

    Parameters
    ----------
    shape : tuple of 3 int
        Number of voxels along i, j, k.
    spacing_mm : tuple of 3 float
        Voxel size along i, j, k in mm.
    origin_ras_mm : tuple of 3 float
        RAS position (mm) of the centre of voxel (0, 0, 0).
    direction_ras : tuple of 9 float
        Row-major 3x3 matrix whose columns are the i, j, k axis directions in RAS (orthonormal).
    """

    shape: tuple
    spacing_mm: tuple
    origin_ras_mm: tuple
    direction_ras: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        object.__setattr__(self, "origin_ras_mm", tuple(float(o) for o in self.origin_ras_mm))
        object.__setattr__(self, "direction_ras", tuple(float(d) for d in np.ravel(self.direction_ras)))
        if len(self.shape) != 3 or len(self.spacing_mm) != 3 or len(self.origin_ras_mm) != 3:
            raise InputError(f"geometry must be 3D, got shape {self.shape} and spacing {self.spacing_mm}")
        if len(self.direction_ras) != 9:
            raise InputError("geometry direction must be a 3x3 matrix")
        if min(self.spacing_mm) <= 0 or not np.all(np.isfinite(self.spacing_mm)):
            raise InputError(f"voxel spacing must be positive, got {self.spacing_mm} mm")

    @property
    def direction_matrix(self) -> np.ndarray:
        """(3, 3) float64: columns are the i, j, k axis directions in RAS."""
        return np.asarray(self.direction_ras, dtype=np.float64).reshape(3, 3)

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix mapping voxel index (i, j, k, 1) to RAS mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction_matrix * np.asarray(self.spacing_mm)
        out[:3, 3] = self.origin_ras_mm
        return out

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def index_to_ras(self, ijk) -> np.ndarray:
        """Map voxel indices (..., 3) (continuous allowed) to RAS positions (..., 3) in mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk * np.asarray(self.spacing_mm) @ self.direction_matrix.T + np.asarray(self.origin_ras_mm)

    def ras_to_index(self, ras_mm) -> np.ndarray:
        """Map RAS positions (..., 3) in mm to continuous voxel indices (..., 3)."""
        ras_mm = np.asarray(ras_mm, dtype=np.float64)
        return (ras_mm - np.asarray(self.origin_ras_mm)) @ self.direction_matrix / np.asarray(self.spacing_mm)

    def contains_index(self, ijk) -> bool:
        """True when the continuous index lies within the voxel grid (centres 0..n-1, half a voxel of slack)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(self.shape) - 0.5))

    def is_close(self, other: "Geometry", tol_mm: float = 1e-3) -> bool:
        """Same shape, and spacing, origin and direction equal within ``tol_mm`` (direction within 1e-4)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
            and np.allclose(self.origin_ras_mm, other.origin_ras_mm, atol=tol_mm)
            and np.allclose(self.direction_ras, other.direction_ras, atol=1e-4)
        )

    def with_shape(self, shape) -> "Geometry":
        return Geometry(shape, self.spacing_mm, self.origin_ras_mm, self.direction_ras)

    def describe(self) -> str:
        return (f"shape {self.shape}, spacing {tuple(round(s, 4) for s in self.spacing_mm)} mm, "
                f"origin {tuple(round(o, 3) for o in self.origin_ras_mm)} mm RAS")


@dataclass
class Volume:
    """A voxel array with its :class:`Geometry`.

    Attributes
    ----------
    array : np.ndarray, shape (ni, nj, nk)
        Voxel values indexed ``[i, j, k]``.
    geometry : Geometry
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"a volume must be a 3D array, got shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise InputError(f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}")

    @classmethod
    def from_array(cls, array, spacing_mm=(1.0, 1.0, 1.0), origin_ras_mm=(0.0, 0.0, 0.0),
                   direction_ras=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> "Volume":
        array = np.asarray(array)
        return cls(array, Geometry(array.shape, spacing_mm, origin_ras_mm, direction_ras))

    def like(self, array) -> "Volume":
        """A new volume with this geometry and the given array (same shape)."""
        return Volume(np.asarray(array), self.geometry)

    @property
    def shape(self) -> tuple:
        return self.geometry.shape

    @property
    def spacing_mm(self) -> tuple:
        return self.geometry.spacing_mm


def bounding_box(mask: np.ndarray, margin=0) -> tuple:
    """Index slices of the box around a mask's true voxels grown by ``margin`` voxels (an int, or one per axis),
    clipped to the array; the whole array when the mask is empty."""
    mask = np.asarray(mask)
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    points = np.argwhere(mask)
    low = np.maximum(points.min(axis=0) - margin, 0)
    high = np.minimum(points.max(axis=0) + np.asarray(margin) + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def require_same_grid(reference: Volume, reference_name: str, other: Volume, other_name: str) -> None:
    """Raise InputError naming both inputs unless ``other`` lies on the same voxel grid as ``reference``."""
    if not reference.geometry.is_close(other.geometry):
        raise InputError(f"{other_name} lies on a different grid than {reference_name}: "
                         f"{other.geometry.describe()} vs {reference.geometry.describe()}; resample it first")


def reorient_to_ras_axes(volume: Volume):
    """Permute and flip the array so axes 0, 1, 2 point (approximately) to R, A, S: for display only.

    Each voxel axis goes to the RAS axis it is closest to; oblique grids are shown as if they were not.

    Returns
    -------
    array : np.ndarray
        A view of ``volume.array`` indexed ``[r, a, s]``.
    spacing_mm : tuple of 3 float
        Voxel size along R, A, S.
    to_display_index : callable
        Maps a voxel index (i, j, k) of ``volume`` to the index in ``array``.
    """
    direction = volume.geometry.direction_matrix
    ras_axis_of = [int(np.argmax(np.abs(direction[:, a]))) for a in range(3)]
    if sorted(ras_axis_of) != [0, 1, 2]:
        raise InputError("cannot display an image whose axes are at 45 degrees to the RAS axes")
    order = [ras_axis_of.index(r) for r in range(3)]  # array axis that becomes R, A, S
    flips = [direction[r, order[r]] < 0 for r in range(3)]
    array = np.transpose(volume.array, order)
    shape = array.shape
    for r in range(3):
        if flips[r]:
            array = np.flip(array, axis=r)
    spacing = tuple(volume.spacing_mm[a] for a in order)

    def to_display_index(ijk):
        ijk = np.asarray(ijk, dtype=np.float64)
        out = np.array([ijk[order[r]] for r in range(3)])
        for r in range(3):
            if flips[r]:
                out[r] = shape[r] - 1 - out[r]
        return out

    return array, spacing, to_display_index
