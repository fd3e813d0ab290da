"""Register a patient T1 to the bundled atlas (affine + diffeomorphic demons), with both warps.

Method
------
1. Both images are brought (anti-aliased) to isotropic working grids of ``working_spacing_mm`` covering their own
   fields of view. Whole-head patients are registered to the atlas T1, skull-stripped ones (BraTS convention) to
   ``Atlas.t1_stripped``; :func:`looks_skull_stripped` decides when the caller does not say.
2. Affine: centres of mass (image moments), then a rigid and an affine phase maximising Mattes mutual information,
   multi-resolution (``affine_levels_mm``), regular-step gradient descent. Tumor voxels (mask dilated by
   ``tumor_margin_mm``) are left out of the metric through the moving mask.
3. Deformable: diffeomorphic demons with symmetric forces on the atlas working grid, coarse to fine
   (``deformable_shrink_factors``), after dividing out a whole head's smooth intensity bias inside the atlas brain
   (N4, ``bias_correction``) and histogram-matching the affinely aligned patient to the atlas. A whole head
   is first cut to the atlas brain mask (both images): the skull and scalp help the affine but not demons. Demons takes
   no mask, so inside the (dilated) tumor the patient's intensities are replaced by the atlas's: the difference,
   and with it the force, is zero there, and the field inside the tumor is the smooth continuation of its
   surroundings.
4. Inverse: the affine is inverted exactly; the displacement field by ITK's fixed-point ``InvertDisplacementField``
   on the working grid. The round-trip residual is in the report.
5. Failure check: the normalised correlation between the warped patient and the atlas inside the atlas brain mask
   (tumor excluded), after the affine (``min_affine_correlation``, 0.5) and after the deformable stage
   (``min_correlation``, 0.8). Below either the registration is rejected with an :class:`InputError`: the image
   is not a brain T1, is wrongly oriented, or the optimisation did not converge.

Timing (default settings, 2 CPU cores, SimpleITK 2.5.7), measured with ``bench/registration.py``: a 1 mm
240 x 240 x 155 skull-stripped T1 (SRI24) registers in 7-9 s in total when the cores are otherwise idle (resampling
0.5 s, affine 1.3 s, deformable 4-5 s, inverse 0.8 s) and in 17 s when other jobs share them (load ~6); a 1 mm
197 x 233 x 189 whole-head T1 takes about the same. Each warp of a map afterwards takes 0.3-0.8 s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..imaging.bias_field import correct_bias
from ..imaging.io import apply_geometry_to_sitk, from_sitk, to_sitk
from ..imaging.volume import LPS_TO_RAS, Geometry, Volume
from ..stage_timer import StageTimer
from ..validation import binary
from . import stages

#: Largest volume (mL) of above-background voxels that still counts as a skull-stripped brain. Brains with their
#: CSF are 1.1-2.0 L (the bundled atlas brain mask: 1.9 L); a head is 3-5 L, and a whole-head scan whose air is
#: noise rather than exact zeros has nearly its whole field of view above its minimum.
SKULL_STRIPPED_MAX_FOREGROUND_ML = 2500.0

#: The similarity checks score the patient's brain voxels up to this intensity percentile (see ``_deformable``).
CHECK_PERCENTILE = 97.0

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


@dataclass(frozen=True)
class RegistrationSettings:
    """How :func:`register_to_atlas` registers; the defaults take 7-9 s for a 1 mm brain on 2 idle cores.

    Attributes
    ----------
    working_spacing_mm : float
        Voxel size (mm) of the grid on which the deformable stage runs and the displacement fields live.
        2 mm resolves gyri well enough for tissue maps at 1-2 mm; 3 mm is ~3x faster and a little less accurate.
    affine_levels_mm : tuple of float
        Effective voxel size (mm) per affine level, coarse to fine (rounded to multiples of the working spacing).
    affine_iterations : int
        Maximum gradient-descent iterations per affine level and phase.
    affine_sampling_fraction : float
        Fraction of atlas voxels sampled by the mutual-information metric.
    deformable_shrink_factors : tuple of int
        Down-sampling of the working grid per demons level, coarse to fine.
    deformable_iterations : tuple of int
        Demons iterations per level (same length as ``deformable_shrink_factors``).
    field_smoothing_mm : float
        Gaussian standard deviation (mm) of the displacement-field regularisation. Smaller fits real anatomy a
        little better (SRI24 -> MNI GM Dice 0.80 at 1 mm vs 0.78 at 2.5 mm) but folds the field (negative
        Jacobian determinants, reported in ``report["jacobian_determinant_in_brain"]``); 2.5 mm with 0.5-voxel
        steps kept the SRI24 field fold-free (smallest determinant 0.18, measured after the determinant was corrected
        for the grid direction; the choice between settings was made with the uncorrected one).
    update_smoothing_mm : float
        Gaussian standard deviation (mm) of the update-field regularisation (0: off; it did not help).
    deformable_max_step_voxels : float
        Largest demons update per iteration (voxels of each level's grid); 1 voxel folded, 0.5 did not.
    inverse_iterations : int
        Fixed-point iterations for inverting the displacement field.
    tumor_margin_mm : float
        The tumor mask is dilated by this much before it is excluded from the similarity.
    min_affine_correlation : float
        Smallest accepted normalised correlation between the affinely aligned patient and the atlas inside the
        atlas brain (tumor excluded). This is the check that tells a brain T1 from something else: demons can
        deform almost anything into a brain-like image, an affine cannot. Calibrated on the bundled atlas at 2 and
        3 mm: real anatomy scores 0.79 (SRI24 to MNI) to 0.93 (synthetic warps of the atlas); uniform and
        smoothed noise, a box, ellipsoids and a layered head phantom score 0.00 to 0.38.
    min_correlation : float
        Smallest accepted correlation after the deformable stage (catches a demons run that did not converge).
        Real anatomy scores 0.94 (SRI24) to 0.98 (synthetic); the phantoms above 0.09-0.66.
    bias_correction : bool
        Whole-head scans only: after the affine, divide out the patient's smooth intensity bias inside the atlas
        brain (N4, :func:`~TumorPersonalizationLib.imaging.bias_field.correct_bias`) before the correlation check
        and demons. Raw clinical scans, post-contrast ones above all, carry a bias of tens of percent; with it and
        the enhanced dura and veins, a synthetic T1Gd made from the atlas scored 0.56 / 0.73 after the affine /
        demons (refused) and 0.65 / 0.90 with N4 (Dice of the atlas' tissue on the patient 0.76 -> 0.88;
        ``Testing/lib/test_registration.py``). Applied only where the fitted field is large (its ``min_spread``;
        the fitted spread is in ``report["bias_field_spread"]``). Costs ~3 s. Skull-stripped inputs (BraTS
        convention) are bias-corrected upstream.
    random_seed : int
        Seed of the metric's voxel sampling, >= 1: runs are repeatable. (SimpleITK reads 0 as "seed from the wall
        clock": every run would differ.)
    """

    working_spacing_mm: float = 2.0
    affine_levels_mm: tuple = (8.0, 4.0)
    affine_iterations: int = 100
    affine_sampling_fraction: float = 0.25
    deformable_shrink_factors: tuple = (4, 2, 1)
    deformable_iterations: tuple = (60, 40, 20)
    field_smoothing_mm: float = 2.5
    update_smoothing_mm: float = 0.0
    deformable_max_step_voxels: float = 0.5
    inverse_iterations: int = 20
    tumor_margin_mm: float = 4.0
    min_affine_correlation: float = 0.5
    min_correlation: float = 0.8
    bias_correction: bool = True
    random_seed: int = 1

    def __post_init__(self):
        object.__setattr__(self, "affine_levels_mm", tuple(float(x) for x in self.affine_levels_mm))
        object.__setattr__(self, "deformable_shrink_factors", tuple(int(x) for x in self.deformable_shrink_factors))
        object.__setattr__(self, "deformable_iterations", tuple(int(x) for x in self.deformable_iterations))
        if not 0.5 <= self.working_spacing_mm <= 8.0:
            raise InputError(f"working_spacing_mm must lie in [0.5, 8] mm, got {self.working_spacing_mm}")
        if not self.affine_levels_mm or min(self.affine_levels_mm) <= 0:
            raise InputError(f"affine_levels_mm must be positive voxel sizes, got {self.affine_levels_mm}")
        if len(self.deformable_shrink_factors) != len(self.deformable_iterations) or not self.deformable_iterations:
            raise InputError("deformable_shrink_factors and deformable_iterations must have the same, non-zero length")
        if min(self.deformable_shrink_factors) < 1 or min(self.deformable_iterations) < 0:
            raise InputError("deformable shrink factors must be >= 1 and iterations >= 0")
        if not 0.0 < self.affine_sampling_fraction <= 1.0:
            raise InputError(f"affine_sampling_fraction must lie in (0, 1], got {self.affine_sampling_fraction}")
        if not self.deformable_max_step_voxels > 0:
            raise InputError(f"deformable_max_step_voxels must be > 0, got {self.deformable_max_step_voxels}")
        if self.field_smoothing_mm < 0 or self.update_smoothing_mm < 0 or self.tumor_margin_mm < 0:
            raise InputError("smoothing and margin lengths must be >= 0 mm")
        if not (isinstance(self.random_seed, int) and self.random_seed >= 1):
            raise InputError(f"random_seed must be an integer >= 1 (0 would seed from the clock), "
                             f"got {self.random_seed!r}")
        for name in ("min_affine_correlation", "min_correlation"):
            if not -1.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{name} must lie in [-1, 1), got {getattr(self, name)}")


class Registration:
    """A patient <-> atlas mapping: an affine and a displacement field (with its inverse).

    Attributes
    ----------
    atlas_geometry : Geometry
        Grid of the atlas (what :meth:`to_atlas` returns).
    patient_geometry : Geometry
        Grid of the patient T1 (what :meth:`to_patient` returns).
    report : dict
        JSON-serialisable: settings, ``skull_stripped``, seconds per stage, metric values, inverse residual.
    """

    def __init__(self, atlas_geometry: Geometry, patient_geometry: Geometry, affine: sitk.AffineTransform,
                 field: sitk.Image, inverse_field: sitk.Image, report: dict):
        self.atlas_geometry = atlas_geometry
        self.patient_geometry = patient_geometry
        self.report = report
        # CompositeTransform([A, B]) applies B first. Atlas x -> x + u(x) (demons) -> affine -> patient.
        self._atlas_to_patient = sitk.CompositeTransform(
            [affine, sitk.DisplacementFieldTransform(sitk.Image(field))])
        # Patient p -> affine^-1 -> y + v(y) (inverse field) -> atlas.
        self._patient_to_atlas = sitk.CompositeTransform(
            [sitk.DisplacementFieldTransform(sitk.Image(inverse_field)), affine.GetInverse()])

    def to_atlas(self, volume: Volume, interpolation: str = "linear") -> Volume:
        """Map a volume on the patient grid to the atlas grid.

        Parameters
        ----------
        volume : Volume
            On ``patient_geometry`` (e.g. a T1Gd, a FLAIR, a segmentation).
        interpolation : {"linear", "nearest"}
            "nearest" for masks and label maps (dtype kept), "linear" for images and densities (float32 out).

        Returns
        -------
        Volume
            On ``atlas_geometry``; 0 where the atlas lies outside the patient's field of view.
        """
        _require_grid(volume.geometry, "the volume passed to to_atlas", self.patient_geometry, "the patient T1")
        return _warp(volume, self.atlas_geometry, self._atlas_to_patient, interpolation)

    def to_patient(self, volume: Volume, interpolation: str = "linear") -> Volume:
        """Map a volume on the atlas grid to the patient grid.

        Parameters
        ----------
        volume : Volume
            On ``atlas_geometry`` (e.g. a simulated density, tissue maps).
        interpolation : {"linear", "nearest"}

        Returns
        -------
        Volume
            On ``patient_geometry``; 0 outside the atlas field of view.
        """
        _require_grid(volume.geometry, "the volume passed to to_patient", self.atlas_geometry, "the atlas")
        return _warp(volume, self.patient_geometry, self._patient_to_atlas, interpolation)

    def atlas_point_to_patient(self, ras_mm) -> np.ndarray:
        """Where a point of the atlas (RAS, mm; e.g. the inferred seed) lies in the patient: (3,) RAS mm."""
        return _map_point(self._atlas_to_patient, ras_mm, "atlas point")

    def patient_point_to_atlas(self, ras_mm) -> np.ndarray:
        """Where a point of the patient (RAS, mm) lies in the atlas: (3,) RAS mm."""
        return _map_point(self._patient_to_atlas, ras_mm, "patient point")


def register_to_atlas(patient_t1: Volume, *, tumor_mask: Volume | None = None, skull_stripped: bool | None = None,
                      atlas=None, settings: RegistrationSettings = RegistrationSettings(),
                      progress=None) -> Registration:
    """Register a patient T1 to the atlas: affine, then diffeomorphic demons, tumor excluded.

    Parameters
    ----------
    patient_t1 : Volume
        The patient's T1 (or T1Gd), any grid, any intensity scale; whole-head or skull-stripped.
    tumor_mask : Volume or None
        Binary, on the same grid as ``patient_t1``: voxels (dilated by ``settings.tumor_margin_mm``) that must not
        drive the alignment because the atlas has no counterpart for them.
    skull_stripped : bool or None
        True: register to ``atlas.t1_stripped``; False: to the whole-head ``atlas.t1``; None: decide with
        :func:`looks_skull_stripped` (foreground volume below ``SKULL_STRIPPED_MAX_FOREGROUND_ML``).
    atlas : Atlas or None
        Defaults to :func:`~TumorPersonalizationLib.imaging.atlas.load_atlas` (the bundled MNI152).
    settings : RegistrationSettings
    progress : callable(fraction_done: float, message: str) or None
        Called between stages; may raise :class:`~TumorPersonalizationLib.errors.Cancelled` to stop.

    Returns
    -------
    Registration

    Raises
    ------
    InputError
        NaN / infinite / constant T1, a tumor mask on another grid or not binary or covering the whole image, or
        a registration whose correlation with the atlas is below ``settings.min_affine_correlation`` after the
        affine or ``settings.min_correlation`` after the deformable stage (not a brain T1, or no convergence).
    """
    if not isinstance(settings, RegistrationSettings):
        raise InputError(f"settings must be a RegistrationSettings, got {type(settings).__name__}")
    patient_array = _validated_t1(patient_t1)
    tumor = _validated_tumor_mask(tumor_mask, patient_t1)
    if atlas is None:
        from ..imaging.atlas import load_atlas
        atlas = load_atlas()
    if skull_stripped is None:
        skull_stripped = looks_skull_stripped(patient_t1)
    skull_stripped = bool(skull_stripped)
    report = {"skull_stripped": skull_stripped, "tumor_masked": tumor is not None,
              "settings": asdict(settings), "seconds": {}}
    timer = StageTimer(report["seconds"])

    def stage(name: str, fraction: float) -> None:
        timer.stop()  # the callback's time (e.g. a GUI redraw) counts towards no stage
        if progress is not None:
            progress(fraction, f"registration: {name}")
        timer.start(name)

    stage("resampling", 0.0)
    work = _working_images(patient_t1, patient_array, tumor, atlas, skull_stripped, settings)
    stage("affine", 0.05)
    moving_mask = None if work.tumor is None else sitk.Cast(1 - work.tumor, sitk.sitkUInt8)
    affine, report["affine_mattes_mi"] = stages.affine_stage(
        work.fixed, work.moving, moving_mask=moving_mask, level_spacings_mm=settings.affine_levels_mm,
        iterations=settings.affine_iterations, sampling_fraction=settings.affine_sampling_fraction,
        seed=settings.random_seed)
    stage("deformable", 0.3)
    field = _deformable(work, affine, settings, report)
    stage("inverse", 0.85)
    inverse_field = stages.invert_field(field, settings.inverse_iterations)
    report["inverse_residual_mm"] = stages.inverse_consistency_mm(field, inverse_field, work.brain)
    report["jacobian_determinant_in_brain"] = stages.jacobian_determinant_stats(field, work.brain)
    timer.stop()
    if progress is not None:
        progress(1.0, "registration: done")
    report["seconds"]["total"] = float(sum(report["seconds"].values()))
    return Registration(work.atlas_t1.geometry, patient_t1.geometry, affine, field, inverse_field, report)


@dataclass(frozen=True)
class _Working:
    """The images the stages register, on the working grids (``working_spacing_mm``): the atlas T1 chosen
    (stripped or whole head) and its resampled image ``fixed`` with the brain mask (image and bool array), the
    patient's ``moving`` image and the dilated tumor mask on its grid (None without one)."""

    skull_stripped: bool
    atlas_t1: Volume
    atlas_grid: sitk.Image
    fixed: sitk.Image
    brain_image: sitk.Image
    brain: np.ndarray
    moving: sitk.Image
    tumor: sitk.Image | None


def _working_images(patient_t1: Volume, patient_array: np.ndarray, tumor: np.ndarray | None, atlas,
                    skull_stripped: bool, settings: RegistrationSettings) -> _Working:
    atlas_t1 = atlas.t1_stripped if skull_stripped else atlas.t1
    atlas_image = to_sitk(atlas_t1.like(atlas_t1.array.astype(np.float32)))
    atlas_grid = stages.grid_like(atlas_image, settings.working_spacing_mm)
    fixed = stages.smooth_resample(atlas_image, atlas_grid)
    brain_image = stages.smooth_resample(to_sitk(atlas.brain_mask), atlas_grid) > 0.5
    brain = sitk.GetArrayFromImage(brain_image).astype(bool)
    patient_image = to_sitk(patient_t1.like(patient_array))
    patient_grid = stages.grid_like(patient_image, settings.working_spacing_mm)
    moving = stages.smooth_resample(patient_image, patient_grid)
    tumor_work = None if tumor is None else _dilated_tumor(patient_t1.like(tumor), patient_grid, settings)
    return _Working(skull_stripped, atlas_t1, atlas_grid, fixed, brain_image, brain, moving, tumor_work)


def _deformable(work: _Working, affine: sitk.Transform, settings: RegistrationSettings, report: dict) -> sitk.Image:
    """The demons displacement field on the atlas working grid, after the affine; the correlation checks of both
    stages go into ``report`` (InputError below the settings' minimum)."""
    fixed, atlas_grid = work.fixed, work.atlas_grid
    aligned = stages.smooth_resample(work.moving, atlas_grid, affine)
    if settings.bias_correction and not work.skull_stripped:
        # Fitted inside the atlas brain only: over the whole head N4 read the scalp's contrast as bias (a scalp 2.5x
        # brighter darkened the brain's rim: WM Dice 0.96 -> 0.86), and over the patient alone anatomy too.
        aligned, report["bias_field_spread"] = correct_bias(aligned, mask=work.brain_image)
    if not work.skull_stripped:
        # The skull, scalp and neck helped the affine; from here on both heads are cut to the atlas brain. Left in,
        # their intensities (which vary most between scanners) set the histogram matching and pull demons off
        # the brain: Colin27's whole head to MNI gave WM / GM Dice 0.68 / 0.72 uncut and 0.80 / 0.75 cut, its
        # skull-stripped version 0.80 / 0.76. Keeping a 4 mm ring around the brain helped GM a little on Colin27
        # (0.77) but, with the non-brain tissue 2.5x brighter than the atlas's, cost 0.19 in WM Dice in the
        # known-deformation test (0.77 instead of 0.96; an 8 mm ring 0.64).
        aligned = stages.restrict_to(aligned, work.brain_image)
        fixed = stages.restrict_to(fixed, work.brain_image)
    aligned = stages.match_intensities(aligned, fixed)
    aligned_array = sitk.GetArrayFromImage(aligned)
    fixed_array = sitk.GetArrayFromImage(fixed)
    excluded = np.zeros_like(work.brain)
    if work.tumor is not None:
        excluded = sitk.GetArrayFromImage(
            sitk.Resample(work.tumor, atlas_grid, affine, sitk.sitkNearestNeighbor, 0)).astype(bool)
    # Atlas intensities inside the tumor: zero difference, zero demons force (demons has no metric mask).
    scored = work.brain & ~excluded
    report["correlation_in_brain"] = {"affine": _checked_correlation(aligned_array, fixed_array, scored)}
    _check_similarity(report, "affine", settings.min_affine_correlation, work.skull_stripped)
    demons_moving = sitk.GetImageFromArray(np.where(excluded, fixed_array, aligned_array).astype(np.float32))
    demons_moving.CopyInformation(atlas_grid)
    field = stages.demons_stage(
        fixed, demons_moving, shrink_factors=settings.deformable_shrink_factors,
        iterations=settings.deformable_iterations, field_smoothing_mm=settings.field_smoothing_mm,
        update_smoothing_mm=settings.update_smoothing_mm, max_step_voxels=settings.deformable_max_step_voxels)
    warped = sitk.Resample(aligned, atlas_grid, sitk.DisplacementFieldTransform(sitk.Image(field)), sitk.sitkLinear,
                           0.0, sitk.sitkFloat32)
    report["correlation_in_brain"]["deformable"] = _checked_correlation(
        sitk.GetArrayViewFromImage(warped), fixed_array, scored)
    _check_similarity(report, "deformable", settings.min_correlation, work.skull_stripped)
    return field


def _checked_correlation(patient: np.ndarray, atlas_t1: np.ndarray, scored: np.ndarray) -> float:
    """The correlation the similarity checks read: over ``scored`` without the patient's brightest voxels there
    (above its ``CHECK_PERCENTILE``). In a T1Gd those are enhancement (dura, veins, choroid plexus) with no
    counterpart in the atlas T1: on the synthetic T1Gd of the tests leaving them out lifted the affine correlation
    from 0.53 to 0.65, while brain-less phantoms stayed at or below 0.28 and the warped atlas went 0.93 -> 0.92."""
    checked = scored & (patient <= np.percentile(patient[scored], CHECK_PERCENTILE))
    return stages.normalised_correlation(patient, atlas_t1, checked)


def _check_similarity(report: dict, stage: str, minimum: float, skull_stripped: bool) -> None:
    value = report["correlation_in_brain"][stage]
    if not value >= minimum:
        kind = "skull-stripped" if skull_stripped else "whole-head"
        raise InputError(
            f"registration to the atlas failed to converge: after the {stage} stage the correlation with the "
            f"{kind} atlas T1 inside the brain is {value:.2f} (< {minimum:.2f}); the image does not look like a "
            f"brain T1 (check the modality, the orientation in the header and the skull_stripped choice)")


def looks_skull_stripped(t1: Volume) -> bool:
    """True when the image looks skull-stripped (BraTS convention): little above its background value.

    Rule: the volume of voxels that differ from the background value is below
    ``SKULL_STRIPPED_MAX_FOREGROUND_ML`` (2.5 L). Skull stripping sets everything outside the brain to one value
    (usually 0), leaving 1.1-2 L; a whole head has 3-5 L of tissue, and its air is usually noise anyway. The
    background value is the most common value on the image's outer faces, not its minimum: a z-scored stripped
    brain goes below its zero background.
    """
    array = np.asarray(t1.array)
    faces = np.concatenate([array[0].ravel(), array[-1].ravel(), array[:, 0].ravel(), array[:, -1].ravel(),
                            array[:, :, 0].ravel(), array[:, :, -1].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    background = values[np.argmax(counts)]
    foreground_ml = np.count_nonzero(array != background) * t1.geometry.voxel_volume_ml
    return bool(foreground_ml < SKULL_STRIPPED_MAX_FOREGROUND_ML)


def _validated_t1(t1: Volume) -> np.ndarray:
    """The T1's array as float32 after checking it is a numeric, finite, non-constant Volume."""
    if not isinstance(t1, Volume):
        raise InputError(f"patient T1: expected a Volume, got {type(t1).__name__}")
    array = np.asarray(t1.array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"patient T1: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError("patient T1: contains NaN or infinite values")
    if min(t1.geometry.shape) < 8:
        raise InputError(f"patient T1: too small to register ({t1.geometry.describe()}); need >= 8 voxels per axis")
    if float(array.max()) <= float(array.min()):
        raise InputError(f"patient T1: the image is empty (every voxel is {float(array.min()):g})")
    return array


def _validated_tumor_mask(mask: Volume | None, t1: Volume) -> np.ndarray | None:
    """The tumor mask as bool on the T1's grid, or None for no mask / an empty one."""
    if mask is None:
        return None
    if not isinstance(mask, Volume):
        raise InputError(f"tumor mask: expected a Volume, got {type(mask).__name__}")
    _require_grid(mask.geometry, "tumor mask", t1.geometry, "the patient T1")
    array = binary(mask.array, "tumor mask")
    if not array.any():
        return None
    if array.mean() > 0.5:
        raise InputError(f"tumor mask: covers {100 * array.mean():.0f}% of the image; expected a lesion mask "
                         f"(is it inverted?)")
    return array


def _dilated_tumor(tumor: Volume, grid: sitk.Image, settings: RegistrationSettings) -> sitk.Image:
    """uint8 tumor mask on the patient working grid: any overlap counts, then dilated by the margin (mm)."""
    fraction = stages.smooth_resample(to_sitk(tumor.like(tumor.array.astype(np.float32))), grid)
    mask = sitk.Cast(fraction > 0.05, sitk.sitkUInt8)
    radius = int(np.ceil(settings.tumor_margin_mm / settings.working_spacing_mm))
    return sitk.BinaryDilate(mask, [radius] * 3) if radius > 0 else mask


def _map_point(transform: sitk.Transform, ras_mm, name: str) -> np.ndarray:
    point = np.asarray(ras_mm, dtype=np.float64)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InputError(f"{name}: expected three finite RAS coordinates in mm, got {ras_mm!r}")
    # LPS_TO_RAS is its own inverse; ITK's transforms work in LPS.
    return LPS_TO_RAS @ np.asarray(transform.TransformPoint(tuple(LPS_TO_RAS @ point)))


def _require_grid(geometry: Geometry, name: str, expected: Geometry, expected_name: str) -> None:
    if not geometry.is_close(expected):
        raise InputError(f"{name} lies on a different grid than {expected_name}: {geometry.describe()} vs "
                         f"{expected.describe()}; resample it first")


def _warp(volume: Volume, reference: Geometry, transform: sitk.Transform, interpolation: str) -> Volume:
    """Pull ``volume`` onto ``reference`` through ``transform`` (reference point -> volume point)."""
    if interpolation not in _INTERPOLATORS:
        raise InputError(f"interpolation must be one of {sorted(_INTERPOLATORS)}, got {interpolation!r}")
    array = np.asarray(volume.array)
    if interpolation == "linear":
        source = to_sitk(volume.like(array.astype(np.float32)))
    else:
        source = to_sitk(volume)
    grid = sitk.Image(reference.shape, sitk.sitkUInt8)
    apply_geometry_to_sitk(grid, reference)
    out = from_sitk(sitk.Resample(source, grid, transform, _INTERPOLATORS[interpolation], 0.0,
                                  source.GetPixelID()))
    if array.dtype == bool:
        return out.like(out.array.astype(bool))
    return out
