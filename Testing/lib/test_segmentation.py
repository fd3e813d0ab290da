"""Tissue maps from a T1 (EM with atlas priors) on a phantom whose true maps are known."""
import numpy as np
import pytest
from scipy import ndimage

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, Volume
from TumorPersonalizationLib.imaging.segmentation import SegmentationSettings, segment_tissue

from conftest import phantom_tissue

GEOMETRY = Geometry((40, 44, 36), (2.0, 2.0, 2.0), (-40.0, -44.0, -36.0))
MEANS = {"wm": 1.0, "gm": 0.65, "csf": 0.25}


def phantom_t1(maps, noise=0.04, skull=False, seed=0):
    """A T1 mixing the classes' intensities by the maps (partial volume) plus noise; ``skull``: a bright shell
    around the brain, as fat and bone marrow give in a whole-head scan."""
    wm, gm, csf = maps
    image = MEANS["wm"] * wm + MEANS["gm"] * gm + MEANS["csf"] * csf
    if skull:
        brain = (wm + gm + csf) > 0.05
        shell = ndimage.binary_dilation(brain, iterations=3) & ~brain
        image = image + 1.2 * shell
    image = image + np.random.default_rng(seed).normal(0.0, noise, image.shape)
    return Volume(image.astype(np.float32), GEOMETRY)


def blurred_priors(maps, shift=1):
    """What a registered atlas gives: smoother than the truth and a voxel off."""
    return {name: np.roll(ndimage.gaussian_filter(m, 1.5), shift, axis=0).astype(np.float32)
            for name, m in zip(("wm", "gm", "csf"), maps)}


def mae(a, b, brain):
    return float(np.abs(a - b)[brain].mean())


def test_maps_are_probabilities_and_beat_the_prior():
    truth = phantom_tissue()
    priors = blurred_priors(truth)
    result = segment_tissue(phantom_t1(truth), priors)
    maps = [result.tissue.wm.array, result.tissue.gm.array, result.tissue.csf.array]
    total = sum(maps)
    assert min(m.min() for m in maps) >= 0.0 and total.max() <= 1.0 + 1e-5
    assert result.tissue.wm.geometry == GEOMETRY
    brain = sum(truth) > 0.5
    for name, found, true in zip(("wm", "gm", "csf"), maps, truth):
        assert mae(found, true, brain) < 0.6 * mae(priors[name], true, brain), name
    report = result.report
    assert report["intensity_mean"]["csf"] < report["intensity_mean"]["gm"] < report["intensity_mean"]["wm"]
    assert abs(report["intensity_mean"]["wm"] / report["intensity_mean"]["gm"] - MEANS["wm"] / MEANS["gm"]) < 0.1
    assert sum(report["brain_share"].values()) == pytest.approx(1.0)
    true_ml = {n: float(m.sum()) * 8e-3 for n, m in zip(("wm", "gm", "csf"), truth)}
    for name in ("wm", "gm"):
        assert report["volume_ml"][name] == pytest.approx(true_ml[name], rel=0.1)


def test_the_lesion_region_takes_the_prior():
    truth = phantom_tissue()
    priors = blurred_priors(truth)
    t1 = phantom_t1(truth)
    lesion = np.zeros(GEOMETRY.shape, np.uint8)
    lesion[10:16, 12:18, 10:15] = 1
    t1.array[lesion > 0] = 2.0  # enhancing tumor: brighter than any tissue
    result = segment_tissue(t1, priors, lesion=Volume(lesion, GEOMETRY),
                            settings=SegmentationSettings(lesion_margin_mm=2.0))
    inside = ndimage.binary_dilation(lesion > 0)
    for name in ("wm", "gm", "csf"):
        np.testing.assert_allclose(getattr(result.tissue, name).array[inside], priors[name][inside], atol=1e-5)
    assert result.report["lesion_voxels_from_prior"] >= int(inside.sum())


def test_whole_head_and_stripped_brain_give_close_maps():
    truth = phantom_tissue()
    priors = blurred_priors(truth)
    stripped = segment_tissue(phantom_t1(truth), priors).tissue
    head = segment_tissue(phantom_t1(truth, skull=True), priors).tissue
    brain = sum(truth) > 0.5
    for name in ("wm", "gm", "csf"):
        assert mae(getattr(head, name).array, getattr(stripped, name).array, brain) < 0.03, name


def test_not_a_t1_is_refused():
    truth = phantom_tissue()
    inverted = phantom_t1(truth)
    inverted = inverted.like(2.0 - inverted.array)  # T2-like contrast: CSF bright, WM dark
    with pytest.raises(InputError, match="not ordered CSF < GM < WM"):
        segment_tissue(inverted, blurred_priors(truth))
    nan = phantom_t1(truth)
    nan.array[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment_tissue(nan, blurred_priors(truth))
    with pytest.raises(InputError, match="not on the T1's grid"):
        segment_tissue(phantom_t1(truth), {n: p[:-1] for n, p in blurred_priors(truth).items()})


@pytest.fixture(scope="module")
def example_patient_3mm():
    """The bundled example patient (SRI24, 1 mm) on a 3 mm grid, so that a calibration runs in seconds."""
    from TumorPersonalizationLib.imaging import read_volume
    from TumorPersonalizationLib.imaging.io import resample
    from TumorPersonalizationLib.imaging.tissue import regrid_geometry
    from TumorPersonalizationLib.resources import resources_dir

    folder = resources_dir() / "ExamplePatient"
    t1 = read_volume(folder / "t1.nii.gz")
    grid = regrid_geometry(t1.geometry, 3.0)
    masks = {n: resample(read_volume(folder / f"{n}.nii.gz"), grid, "nearest") for n in ("t1gd", "flair")}
    return resample(t1, grid, "linear"), masks["t1gd"], masks["flair"]


def test_sampling_methods_segment_the_t1_when_no_maps_are_given(example_patient_3mm):
    from TumorPersonalizationLib.methods import tmcmc
    from TumorPersonalizationLib.personalization import Case

    t1, t1gd, flair = example_patient_3mm
    case = Case.from_volumes(t1gd, flair, t1=t1)
    result = tmcmc.personalize(case, tmcmc.Settings(samples=32, workers=1, predictive_draws=2, margin_mm=5.0))
    tissue = result.report["tissue"]
    assert tissue["source"].startswith("segmented from t1")
    assert 0.25 < tissue["brain_share"]["wm"] < 0.5 and 0.35 < tissue["brain_share"]["gm"] < 0.6
    assert tissue["lesion_voxels_from_prior"] > flair.array.sum()
    assert result.density.geometry == t1.geometry  # calibrated on the patient's grid, no atlas in between
    lesion = flair.array > 0
    assert result.density.array[lesion].mean() > 5 * result.density.array[~lesion].mean()


def test_given_maps_are_used_as_given(example_patient_3mm):
    from TumorPersonalizationLib.personalization import Case
    from TumorPersonalizationLib.personalization.anatomy import patient_tissue

    t1, t1gd, flair = example_patient_3mm
    wm = t1.like(np.full(t1.shape, 0.5, np.float32))
    gm = t1.like(np.full(t1.shape, 0.25, np.float32))
    case = Case.from_volumes(t1gd, flair, t1=t1, wm=wm, gm=gm, names={"wm": "--wm wm.nii.gz"})
    tissue, report = patient_tissue(case)
    assert tissue.wm is case.wm and tissue.gm is case.gm and report["source"].startswith("given (--wm wm.nii.gz")
    assert patient_tissue(Case.from_volumes(t1gd, flair, t1=t1), segment=False) == (None, {"source": "bundled atlas"})


def test_a_strong_bias_field_is_divided_out():
    # A coil's smooth bias of +-40 % across the head: the classes' intensities overlap from one side to the other.
    truth = phantom_tissue()
    priors = blurred_priors(truth)
    plain = phantom_t1(truth)
    i, j, k = (axis / (n / 2) - 1 for axis, n in zip(np.indices(GEOMETRY.shape, dtype=np.float32), GEOMETRY.shape))
    biased = plain.like((plain.array * (1 + 0.4 * (0.7 * i + 0.5 * k + 0.3 * j))).astype(np.float32))
    brain = sum(truth) > 0.5

    def wm_error(t1, **settings):
        result = segment_tissue(t1, priors, settings=SegmentationSettings(**settings))
        return mae(result.tissue.wm.array, truth[0], brain), result.report["bias_field_spread"]

    clean_error, clean_spread = wm_error(plain)
    uncorrected_error, _ = wm_error(biased, bias_correction=False)
    corrected_error, spread = wm_error(biased)
    print("WM MAE clean / biased uncorrected / corrected:", clean_error, uncorrected_error, corrected_error,
          "fitted spreads", clean_spread, spread)
    assert spread > 1.3 and clean_spread <= 1.3  # corrected only where the bias is large
    assert corrected_error < 0.7 * uncorrected_error  # measured 0.030 against 0.050
    assert corrected_error < 1.05 * clean_error  # measured 0.030, as without a bias
