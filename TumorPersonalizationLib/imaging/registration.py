"""Patient-to-atlas registration with SimpleITK: affine, then a B-spline deformation, the lesion masked out.

The transform maps *atlas* points to *patient* points (ITK's convention: the atlas is the fixed image), which is
what resampling a patient image onto the atlas grid needs. The way back (atlas density -> patient grid) uses the
inverse: the affine part inverts exactly, the B-spline part is turned into a displacement field on the atlas grid
and inverted iteratively (``sitk.InvertDisplacementField``).

Defaults (:class:`RegistrationSettings`): both images resampled to 3 mm for the optimisation; Mattes mutual
information; the affine stage on a 3-level pyramid (shrink 4/2/1 of the 3 mm grid), initialised by aligning the
centres of mass; the B-spline stage with a 4-control-points-per-axis mesh refined twice (4 -> 8 -> 16), L-BFGS-B.
Whole-head images are registered to the atlas T1, skull-stripped ones (BraTS) to the atlas T1 times its brain mask;
``skull_stripped=None`` decides from the volume of non-zero voxels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .atlas import Atlas
from .io import apply_geometry_to_sitk, from_sitk, to_sitk
from .volume import Geometry, Volume, require_same_grid

STRIPPED_MAX_ML = 2300.0
"""Non-zero volume below which an image counts as skull-stripped (the atlas' brain mask holds ~1900 mL)."""


@dataclass(frozen=True)
class RegistrationSettings:
    working_spacing_mm: float = 3.0
    affine_iterations: int = 200
    bspline_mesh: int = 4
    bspline_iterations: int = 60
    sampling_fraction: float = 0.2
    lesion_dilation_mm: float = 5.0
    seed: int = 0


@dataclass
class Registration:
    """A patient <-> atlas mapping with resampling in both directions."""

    transform: sitk.Transform          # atlas point -> patient point
    inverse: sitk.Transform            # patient point -> atlas point
    atlas_geometry: Geometry
    patient_geometry: Geometry
    metric: float
    timings_s: dict = field(default_factory=dict)

    def to_atlas(self, volume: Volume, interpolation: str = "linear") -> Volume:
        """A patient-space volume resampled onto the atlas grid ("nearest" for masks and labels)."""
        return _warp(volume, self.atlas_geometry, self.transform, interpolation)

    def to_patient(self, volume: Volume, interpolation: str = "linear") -> Volume:
        """An atlas-space volume resampled onto the patient grid."""
        return _warp(volume, self.patient_geometry, self.inverse, interpolation)


def _warp(volume: Volume, target: Geometry, transform: sitk.Transform, interpolation: str) -> Volume:
    modes = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
    if interpolation not in modes:
        raise InputError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    reference = sitk.Image(target.shape, sitk.sitkUInt8)
    apply_geometry_to_sitk(reference, target)
    source = to_sitk(volume)
    out = sitk.Resample(source, reference, transform, modes[interpolation], 0.0, source.GetPixelID())
    return from_sitk(out)


def _working_image(volume: Volume, spacing_mm: float) -> sitk.Image:
    image = sitk.Cast(to_sitk(volume.like(volume.array.astype(np.float32))), sitk.sitkFloat32)
    old = np.asarray(image.GetSpacing())
    size = [max(int(round(n * s / spacing_mm)), 8) for n, s in zip(image.GetSize(), old)]
    sigma = np.sqrt(np.maximum(spacing_mm ** 2 - old ** 2, 0.0)) / 2.355
    if np.any(sigma > 0):
        image = sitk.SmoothingRecursiveGaussian(image, sigma.tolist())
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing([spacing_mm] * 3)
    reference.SetDirection(image.GetDirection())
    corner = np.asarray(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    reference.SetOrigin((corner + direction @ np.full(3, spacing_mm / 2.0)).tolist())
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    # Intensities to a common scale so the metric's histogram bins mean the same in both images.
    array = sitk.GetArrayViewFromImage(resampled)
    top = float(np.percentile(array[array > 0], 99.5)) if np.any(array > 0) else 1.0
    return sitk.Clamp(resampled / max(top, 1e-6), sitk.sitkFloat32, 0.0, 1.0)


def is_skull_stripped(t1: Volume) -> bool:
    """True when the non-zero part of the image is brain-sized (see :data:`STRIPPED_MAX_ML`)."""
    return float(np.count_nonzero(t1.array > 0) * t1.geometry.voxel_volume_ml) < STRIPPED_MAX_ML


def _method(settings: RegistrationSettings) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_fraction, seed=settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    return method


def register_to_atlas(t1: Volume, atlas: Atlas, lesion: Volume | None = None, *, skull_stripped: bool | None = None,
                      settings: RegistrationSettings = RegistrationSettings()) -> Registration:
    """Register a patient T1 (or T1Gd) to the atlas; the lesion (patient grid) is left out of the metric.

    Raises
    ------
    InputError
        The lesion mask is on another grid than the T1, or the optimisation ends with a poor fit (the image is
        probably not a brain MRI): mutual information near zero after the affine stage.
    """
    if lesion is not None:
        require_same_grid(t1, "the patient T1", lesion, "the lesion mask")
    stripped = is_skull_stripped(t1) if skull_stripped is None else skull_stripped
    atlas_image = atlas.t1_stripped if stripped else atlas.t1
    fixed = _working_image(atlas_image, settings.working_spacing_mm)
    moving = _working_image(t1, settings.working_spacing_mm)
    started = time.perf_counter()

    moving_mask = None
    if lesion is not None and np.any(lesion.array):
        mask = sitk.Cast(to_sitk(lesion.like(lesion.array.astype(np.uint8))), sitk.sitkUInt8)
        radius = [max(1, int(round(settings.lesion_dilation_mm / s))) for s in mask.GetSpacing()]
        mask = sitk.BinaryDilate(mask, radius)
        healthy = sitk.Resample(1 - mask, moving, sitk.Transform(), sitk.sitkNearestNeighbor, 1)
        moving_mask = sitk.Cast(healthy, sitk.sitkUInt8)

    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    affine_method = _method(settings)
    if moving_mask is not None:
        affine_method.SetMetricMovingMask(moving_mask)
    affine_method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4,
                                                           numberOfIterations=settings.affine_iterations,
                                                           relaxationFactor=0.6)
    affine_method.SetOptimizerScalesFromPhysicalShift()
    affine_method.SetShrinkFactorsPerLevel([4, 2, 1])
    affine_method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    affine_method.SetInitialTransform(initial, inPlace=False)
    affine = affine_method.Execute(fixed, moving)
    affine_metric = affine_method.GetMetricValue()
    after_affine = time.perf_counter()
    if not np.isfinite(affine_metric) or affine_metric > -0.05:
        raise InputError(f"registration to the atlas failed (mutual information {-affine_metric:.3f} after the "
                         f"affine stage): is the image a brain T1?")

    mesh = sitk.BSplineTransformInitializer(fixed, [settings.bspline_mesh] * 3)
    bspline_method = _method(settings)
    if moving_mask is not None:
        bspline_method.SetMetricMovingMask(moving_mask)
    bspline_method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5,
                                        numberOfIterations=settings.bspline_iterations)
    bspline_method.SetShrinkFactorsPerLevel([4, 2, 1])
    bspline_method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    bspline_method.SetMovingInitialTransform(affine)
    bspline_method.SetInitialTransformAsBSpline(mesh, inPlace=True, scaleFactors=[1, 2, 4])
    bspline = bspline_method.Execute(fixed, moving)
    after_bspline = time.perf_counter()

    # atlas point x -> affine(bspline(x)) in patient space
    transform = sitk.CompositeTransform([affine, bspline])
    atlas_geometry = atlas.t1.geometry
    field = sitk.TransformToDisplacementField(bspline, sitk.sitkVectorFloat64, fixed.GetSize(), fixed.GetOrigin(),
                                              fixed.GetSpacing(), fixed.GetDirection())
    inverse_field = sitk.InvertDisplacementField(field, maximumNumberOfIterations=20,
                                                 maxErrorToleranceThreshold=0.01, meanErrorToleranceThreshold=1e-4,
                                                 enforceBoundaryCondition=True)
    inverse_bspline = sitk.DisplacementFieldTransform(inverse_field)
    inverse = sitk.CompositeTransform([inverse_bspline, affine.GetInverse()])
    finished = time.perf_counter()
    return Registration(transform, inverse, atlas_geometry, t1.geometry, float(-bspline_method.GetMetricValue()),
                        {"affine": after_affine - started, "bspline": after_bspline - after_affine,
                         "inverse": finished - after_bspline, "total": finished - started})
