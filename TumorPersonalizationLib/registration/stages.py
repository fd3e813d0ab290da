"""The numerical stages of atlas registration, on SimpleITK images (LPS, as ITK wants them).

Nothing here knows about :class:`~TumorPersonalizationLib.imaging.volume.Volume`, RAS or user input: the public
boundary (:mod:`.atlas_registration`) validates and converts. Convention throughout: ``fixed`` is the atlas,
``moving`` the patient, and every transform maps a point of the fixed (atlas) space to the moving (patient) space,
which is what :func:`SimpleITK.Resample` needs to pull patient intensities onto the atlas grid.
"""
from __future__ import annotations

import contextlib

import numpy as np
import SimpleITK as sitk

FIELD_PIXEL = sitk.sitkVectorFloat64  # what DisplacementFieldTransform and the demons filters accept
# First step length of the regular-step gradient descent, in (physical-shift scaled) parameter units: the step
# vector has this length whatever mix of angles, matrix entries and translations it holds.
RIGID_LEARNING_RATE = 4.0
AFFINE_LEARNING_RATE = 1.0  # the affine phase starts from the rigid pose


def grid_like(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty isotropic grid covering ``image``'s field of view, same direction and centre.

    Parameters
    ----------
    image : sitk.Image
        Defines the field of view (size * spacing, mm) and the axis directions.
    spacing_mm : float
        Voxel size of the new grid.

    Returns
    -------
    sitk.Image
        uint8 image of zeros with at least 8 voxels per axis (so several pyramid levels fit).
    """
    old_spacing = np.asarray(image.GetSpacing())
    extent_mm = old_spacing * np.asarray(image.GetSize())
    size = [max(8, round(e / spacing_mm)) for e in extent_mm]
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(
        ((np.asarray(image.GetSize()) - 1) / 2.0).tolist()))
    origin = centre - direction @ ((np.asarray(size) - 1) / 2.0 * spacing_mm)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([float(spacing_mm)] * 3)
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(origin.tolist())
    return grid


def smooth_resample(image: sitk.Image, grid: sitk.Image, transform: sitk.Transform | None = None,
                    default_value: float = 0.0) -> sitk.Image:
    """Float32 linear resampling onto ``grid``, Gaussian-smoothed first where ``grid`` is coarser.

    The smoothing (sigma = sqrt(h_new^2 - h_old^2) / 2 mm per axis) stops thin structures such as cortex from
    aliasing when a 1 mm scan is brought to a 2-8 mm working grid.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    old = np.asarray(image.GetSpacing())
    new = np.asarray(grid.GetSpacing())
    sigma_mm = np.sqrt(np.maximum(new ** 2 - old ** 2, 0.0)) / 2.0
    if np.any(sigma_mm > 0.1 * old):
        image = sitk.SmoothingRecursiveGaussian(image, np.maximum(sigma_mm, 1e-3).tolist())
    return sitk.Resample(image, grid, transform or sitk.Transform(), sitk.sitkLinear, float(default_value),
                         sitk.sitkFloat32)


def foreground_for_moments(image: sitk.Image) -> sitk.Image:
    """``image`` with values below 10 % of its 99th percentile set to 0.

    The centre of mass then follows the head or brain, not the noise in the air around it (which would pull the
    moments initialisation towards the centre of the field of view).
    """
    array = sitk.GetArrayViewFromImage(image)
    threshold = 0.1 * float(np.percentile(array, 99.0))
    out = sitk.GetImageFromArray(np.where(array > threshold, array, 0.0).astype(np.float32))
    out.CopyInformation(image)
    return out


def affine_stage(fixed: sitk.Image, moving: sitk.Image, *, moving_mask: sitk.Image | None, level_spacings_mm,
                 iterations: int, sampling_fraction: float, seed: int) -> tuple[sitk.AffineTransform, float]:
    """Multi-resolution affine registration by Mattes mutual information.

    Parameters
    ----------
    fixed, moving : sitk.Image
        Float32 atlas and patient on their (coarse) working grids.
    moving_mask : sitk.Image or None
        uint8, 1 where patient voxels may enter the metric (0 in and around the tumor).
    level_spacings_mm : sequence of float
        Effective voxel size per level, coarse to fine (shrink factors are derived from the working spacing).
    iterations : int
        Maximum optimizer iterations per level (rigid and affine phases alike).
    sampling_fraction : float
        Fraction of fixed voxels sampled by the metric (random, seeded: runs are repeatable).
    seed : int
        Seed of that sampling, >= 1 (SimpleITK reads 0 as "seed from the wall clock").

    Returns
    -------
    transform : sitk.AffineTransform
        Atlas point -> patient point (mm, LPS).
    metric : float
        Final Mattes metric (negative mutual information: lower is better).
    """
    # Moments put the centres of mass together; a rigid phase then finds the pose before the affine phase is
    # allowed to scale and shear (straight to affine, the 12 parameters can trade rotation for shear early on).
    initial = sitk.CenteredTransformInitializer(
        foreground_for_moments(fixed), foreground_for_moments(moving), sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid, rigid_metric = _run_level_set(fixed, moving, moving_mask, sitk.Euler3DTransform(initial),
                                         level_spacings_mm, iterations, sampling_fraction, seed, RIGID_LEARNING_RATE)
    # The affine phase repeats the two finest levels (with the default two levels: both) with shorter steps: the
    # rigid phase has found the pose, the affine adds scaling and shear of a few percent. With the rigid phase's
    # rate of 4, the first affine step (nearly all in the matrix entries, the translation having converged) could
    # throw the matrix far off: 1 sampling seed in 150 on the example patient collapsed it to a third, and the
    # correlation after the affine fell from 0.77 to -0.05.
    affine, metric = _run_level_set(fixed, moving, moving_mask, _as_affine(rigid), level_spacings_mm[-2:],
                                    iterations, sampling_fraction, seed, AFFINE_LEARNING_RATE)
    # Both phases end on the same level with the same samples, so the metrics compare; never hand on an affine
    # that fits worse than the rigid transform it started from.
    if not metric <= rigid_metric:
        return _as_affine(rigid), rigid_metric
    return affine, metric


def _as_affine(rigid: sitk.Euler3DTransform) -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


def _run_level_set(fixed, moving, moving_mask, initial, level_spacings_mm, iterations, sampling_fraction, seed,
                   learning_rate):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(float(sampling_fraction), int(seed))
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    method.SetInterpolator(sitk.sitkLinear)
    # Scales from physical shift make rotation, scaling and translation parameters comparable.
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=float(learning_rate), minStep=0.05,
                                                    numberOfIterations=int(iterations), relaxationFactor=0.6,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    working_mm = fixed.GetSpacing()[0]
    shrink = [max(1, round(s / working_mm)) for s in level_spacings_mm]
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel([0.5 * f * working_mm if f > 1 else 0.0 for f in shrink])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)  # optimised in place: ``initial`` holds the result
    with _one_itk_thread():
        method.Execute(fixed, moving)
    return initial, float(method.GetMetricValue())


@contextlib.contextmanager
def _one_itk_thread():
    """Run ITK on one thread inside the block (the process-wide default, restored after).

    ITK's registration metric splits its sampled points over threads as they come free, so the floating-point sums
    of the Mattes histogram and gradient change order from run to run; over the optimiser's iterations that moved
    the example patient's warped images by up to 0.4 (3.5e-4 in its density). ``ImageRegistrationMethod``'s own
    ``SetNumberOfThreads`` does not reach the metric, hence the process-wide default. The demons stages are
    repeatable with any thread count. Cost: the affine stage takes about 1 s longer on 2 cores.
    """
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def demons_stage(fixed: sitk.Image, moving: sitk.Image, *, shrink_factors, iterations, field_smoothing_mm: float,
                 update_smoothing_mm: float, max_step_voxels: float) -> sitk.Image:
    """Multi-resolution diffeomorphic demons (symmetric forces) from a zero field.

    Parameters
    ----------
    fixed, moving : sitk.Image
        Float32 atlas and affinely aligned patient on the same working grid, intensities already matched
        (demons compares intensities directly; it has no mutual-information variant).
    shrink_factors : sequence of int
        Coarse-to-fine down-sampling of the working grid per level (e.g. (4, 2, 1)).
    iterations : sequence of int
        Demons iterations per level.
    field_smoothing_mm : float
        Gaussian standard deviation (mm) applied to the displacement field after every iteration (elastic-like
        regularisation; larger is smoother); at least one voxel of the level's grid.
    update_smoothing_mm : float
        Gaussian standard deviation (mm) applied to each update (fluid-like regularisation); 0 disables it.
    max_step_voxels : float
        Largest update per iteration, in voxels of the level's grid.

    Returns
    -------
    sitk.Image
        Displacement field (VectorFloat64, mm, LPS) on the grid of ``fixed``: atlas point x maps to x + u(x) in the
        affinely aligned patient space.
    """
    field = None
    for factor, n_iter in zip(shrink_factors, iterations):
        grid = grid_like(fixed, fixed.GetSpacing()[0] * factor) if factor > 1 else fixed
        level_fixed = smooth_resample(fixed, grid) if factor > 1 else fixed
        level_moving = smooth_resample(moving, grid) if factor > 1 else moving
        if field is None:
            field = sitk.Image(grid.GetSize(), FIELD_PIXEL)
            field.CopyInformation(grid)
        else:
            # Displacements are in mm, so the coarse field carries over to the finer grid by plain interpolation.
            field = sitk.Resample(field, grid, sitk.Transform(), sitk.sitkLinear, 0.0, FIELD_PIXEL)
        spacing_mm = grid.GetSpacing()[0]
        demons = sitk.DiffeomorphicDemonsRegistrationFilter()
        demons.SetNumberOfIterations(int(n_iter))
        # ITK's demons smooth in voxel units; convert so the regularisation means the same at every level, but
        # never below one voxel: less lets neighbouring voxels move independently and the field folds.
        demons.SetSmoothDisplacementField(field_smoothing_mm > 0)
        demons.SetStandardDeviations(max(field_smoothing_mm / spacing_mm, 1.0))
        demons.SetSmoothUpdateField(update_smoothing_mm > 0)
        demons.SetUpdateFieldStandardDeviations(max(update_smoothing_mm / spacing_mm, 0.5))
        # Short steps (voxels per iteration) keep the composed field free of folds; 1 voxel folded real anatomy.
        demons.SetMaximumUpdateStepLength(float(max_step_voxels))
        demons.SetUseGradientType(demons.Symmetric)
        field = demons.Execute(level_fixed, level_moving, field)
    if shrink_factors[-1] > 1:  # a schedule that stops on a coarse level still returns a field on ``fixed``'s grid
        field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, FIELD_PIXEL)
    return field


def restrict_to(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """Float32 ``image`` with every voxel outside ``mask`` (same grid) set to 0."""
    return sitk.Mask(sitk.Cast(image, sitk.sitkFloat32), sitk.Cast(mask, sitk.sitkUInt8), 0.0)


def match_intensities(moving: sitk.Image, fixed: sitk.Image) -> sitk.Image:
    """``moving`` with its histogram matched to ``fixed`` (foreground only: both thresholded at their mean).

    Demons assumes equal intensities for equal tissue; scanners and atlases differ in scale and contrast.
    """
    return sitk.HistogramMatching(moving, fixed, numberOfHistogramLevels=256, numberOfMatchPoints=32,
                                  thresholdAtMeanIntensity=True)


def invert_field(field: sitk.Image, iterations: int) -> sitk.Image:
    """The inverse displacement field on the same grid (fixed-point iteration, ITK's InvertDisplacementField)."""
    return sitk.InvertDisplacementField(field, maximumNumberOfIterations=int(iterations),
                                        maxErrorToleranceThreshold=0.01, meanErrorToleranceThreshold=0.0001,
                                        enforceBoundaryCondition=True)


def inverse_consistency_mm(field: sitk.Image, inverse: sitk.Image, mask: np.ndarray | None = None) -> dict:
    """Mean and 99th-percentile residual |u(x) + v(x + u(x))| (mm) of a field and its inverse, on ``field``'s grid.

    ``mask`` (numpy, [k, j, i] like SimpleITK arrays) restricts the statistics, e.g. to the brain.
    """
    warped_inverse = sitk.Resample(inverse, field, sitk.DisplacementFieldTransform(sitk.Image(field)),
                                   sitk.sitkLinear, 0.0, FIELD_PIXEL)
    residual = sitk.GetArrayViewFromImage(field) + sitk.GetArrayViewFromImage(warped_inverse)
    norm = np.linalg.norm(residual, axis=-1)
    values = norm[mask] if mask is not None else norm.ravel()
    return {"mean": float(values.mean()), "p99": float(np.percentile(values, 99.0))}


def jacobian_determinant_stats(field: sitk.Image, mask: np.ndarray) -> dict:
    """Minimum and 1st percentile of det(I + grad u) over ``mask`` ([k, j, i]): <= 0 would mean folding.

    ITK's determinant filter differentiates along the index axes and ignores the image direction, which is wrong
    for the atlas' LPS grid (direction diag(-1, -1, 1)); the vectors are rotated into the index frame first
    (det(I + D^T grad u D) = det(I + grad u)) and the filter runs on an identity-direction copy.
    """
    direction = np.asarray(field.GetDirection()).reshape(3, 3)
    in_index_frame = sitk.GetImageFromArray(sitk.GetArrayFromImage(field) @ direction, isVector=True)
    in_index_frame.SetSpacing(field.GetSpacing())
    # A copy, not a view: a view of the filter's temporary output would outlive the image it points into.
    determinant = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(
        sitk.Cast(in_index_frame, FIELD_PIXEL)))[mask]
    return {"min": float(determinant.min()), "p01": float(np.percentile(determinant, 1.0))}


def normalised_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` over ``mask`` (same shapes); 0 when either is constant there."""
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0
