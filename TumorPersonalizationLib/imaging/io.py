"""NIfTI / NRRD reading, writing and resampling through SimpleITK, geometry intact.

SimpleITK (like ITK and DICOM) works in LPS; the Lib works in RAS. The flip of the first two physical axes happens
here and nowhere else.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..files import atomic_path
from .volume import LPS_TO_RAS, Geometry, Volume

SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

_NUMPY_TO_SITK_OK = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64


def nifti_nonfinite_count(path) -> int:
    """NaN and infinite voxel values stored in a NIfTI-1 or NIfTI-2 file (0 for integer data).

    ITK's NIfTI reader turns NaN into 0 on reading, so a NaN-filled mask or map would pass every check as a
    plausible image: the stored values are counted here from the file itself.
    """
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        header = stream.read(540)
        if len(header) < 348:
            return 0
        for order in ("<", ">"):
            size = int(np.frombuffer(header[:4], f"{order}i4")[0])
            if size in (348, 540):
                break
        else:
            return 0
        if size == 348:   # NIfTI-1: dim int16[8] at 40, datatype int16 at 70, vox_offset float32 at 108
            dims = np.frombuffer(header[40:56], f"{order}i2").astype(np.int64)
            datatype = int(np.frombuffer(header[70:72], f"{order}i2")[0])
            offset = int(np.frombuffer(header[108:112], f"{order}f4")[0])
        else:             # NIfTI-2: datatype int16 at 12, dim int64[8] at 16, vox_offset int64 at 168
            datatype = int(np.frombuffer(header[12:14], f"{order}i2")[0])
            dims = np.frombuffer(header[16:80], f"{order}i8")
            offset = int(np.frombuffer(header[168:176], f"{order}i8")[0])
        if datatype not in _NIFTI_FLOAT_TYPES:
            return 0
        count = int(np.prod(dims[1:1 + max(1, min(int(dims[0]), 7))]))
        stream.seek(offset)
        data = np.frombuffer(stream.read(count * np.dtype(_NIFTI_FLOAT_TYPES[datatype]).itemsize),
                             f"{order}{_NIFTI_FLOAT_TYPES[datatype]}")
    return int(np.count_nonzero(~np.isfinite(data)))


def geometry_from_sitk(image: sitk.Image) -> Geometry:
    """Geometry (RAS) of a 3D SimpleITK image (LPS)."""
    direction_lps = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Geometry(
        shape=image.GetSize(),
        spacing_mm=image.GetSpacing(),
        origin_ras_mm=LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64),
        direction_ras=LPS_TO_RAS @ direction_lps,
    )


def apply_geometry_to_sitk(image: sitk.Image, geometry: Geometry) -> None:
    """Set spacing, origin and direction (converted to LPS) on a SimpleITK image in place."""
    image.SetSpacing(geometry.spacing_mm)
    image.SetOrigin(tuple(LPS_TO_RAS @ np.asarray(geometry.origin_ras_mm)))
    image.SetDirection(tuple((LPS_TO_RAS @ geometry.direction_matrix).ravel()))


def to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the volume's values and geometry (bool arrays become uint8)."""
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype not in _NUMPY_TO_SITK_OK:
        array = array.astype(np.float32)
    # SimpleITK arrays are indexed [k, j, i]; ours [i, j, k].
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    apply_geometry_to_sitk(image, volume.geometry)
    return image


def from_sitk(image: sitk.Image) -> Volume:
    """A :class:`Volume` from a 3D scalar SimpleITK image."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected a 3D scalar image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")
    array = np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))
    return Volume(array, geometry_from_sitk(image))


def read_volume(path, name: str = "image") -> Volume:
    """Read a NIfTI / NRRD / MetaImage file into a :class:`Volume`.

    Parameters
    ----------
    path : str or Path
    name : str
        What the file is (e.g. ``"--wm"``), used in error messages.

    Raises
    ------
    InputError
        The file is missing, unreadable, not 3D, not scalar, or holds NaN or infinite values (no input of this
        project has a meaning for them, and they would pass silently through every comparison).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name}: file not found: {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise InputError(f"{name}: cannot read {path} as an image ({first_line})") from None
    where = name if str(path) in name else f"{name}: {path}"  # callers often name the input by flag and path
    try:
        volume = from_sitk(image)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if np.issubdtype(volume.array.dtype, np.floating):
        bad = np.count_nonzero(~np.isfinite(volume.array))
        if _suffix(path) in (".nii", ".nii.gz"):
            bad = max(bad, nifti_nonfinite_count(path))
        if bad:
            raise InputError(f"{where} holds {bad} NaN or infinite voxel value{'s' if bad > 1 else ''}; "
                             "give finite values (e.g. 0 outside the brain)")
    return volume


def write_volume(volume: Volume, path, compress: bool = True) -> Path:
    """Write a volume atomically: a temporary file in the same folder, renamed when complete.

    A failure or interruption never leaves a half-written file at ``path``.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not suffix:
        raise InputError(f"output {path}: unsupported extension (use one of {', '.join(SUPPORTED_SUFFIXES)})")
    with atomic_path(path, suffix) as tmp:
        sitk.WriteImage(to_sitk(volume), tmp, compress)
    return path


def resample(volume: Volume, reference: Geometry, interpolation: str = "linear", default_value: float = 0.0
             ) -> Volume:
    """Resample ``volume`` onto the grid ``reference`` (same physical space, identity transform).

    Parameters
    ----------
    interpolation : {"linear", "nearest", "bspline"}
        Use "nearest" for label maps and masks (the pixel type is kept); "linear" and "bspline" give float32, so
        an integer image (a uint8 PET, a 0/1 tissue mask) is not rounded back to integers.
    default_value : float
        Value of output voxels that fall outside the input image.
    """
    interpolators = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}
    if interpolation not in interpolators:
        raise InputError(f"interpolation must be one of {sorted(interpolators)}, got {interpolation!r}")
    source = to_sitk(volume)
    if interpolation != "nearest":
        source = sitk.Cast(source, sitk.sitkFloat32)
    ref_image = sitk.Image(reference.shape, sitk.sitkUInt8)
    apply_geometry_to_sitk(ref_image, reference)
    out = sitk.Resample(source, ref_image, sitk.Transform(), interpolators[interpolation], float(default_value),
                        source.GetPixelID())
    return from_sitk(out)


def resample_smooth(volume: Volume, reference: Geometry) -> Volume:
    """Linear resampling onto ``reference`` as float32, Gaussian-smoothed first where ``reference`` is coarser.

    The Gaussian's FWHM is sqrt(h_new^2 - h_old^2) per axis, so a coarse voxel averages what it covers instead of
    sampling one point (which aliases thin structures such as cortex into holes).
    """
    from scipy import ndimage

    old = np.asarray(volume.geometry.spacing_mm)
    new = np.asarray(reference.spacing_mm)
    array = volume.array.astype(np.float32)
    sigma_voxels = np.sqrt(np.maximum(new ** 2 - old ** 2, 0.0)) / 2.355 / old
    if np.any(sigma_voxels > 0.1):
        array = ndimage.gaussian_filter(array, sigma_voxels, mode="nearest")
    return resample(volume.like(array), reference, "linear")
