"""Radiotherapy plans and metrics against independent truths: analytic ball volumes, brute-force distances,
hand-built masks with known overlaps, spheres of known radii, samples with a known distribution."""
import math

import numpy as np
import pytest

from TumorPersonalizationLib import metrics, radiotherapy
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Volume
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain

ANISOTROPIC = (0.8, 1.1, 2.5)


def oblique():
    a = np.deg2rad(30.0)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def ball(shape, spacing, centre_index, radius_mm, direction=np.eye(3)):
    """Voxels whose centre lies within radius_mm of the centre, computed in physical space (RAS)."""
    volume = Volume.from_array(np.zeros(shape, dtype=bool), spacing_mm=spacing, direction_ras=direction)
    ijk = np.indices(shape).reshape(3, -1).T
    distance = np.linalg.norm(volume.geometry.index_to_ras(ijk) - volume.geometry.index_to_ras(centre_index), axis=1)
    return volume.like((distance <= radius_mm + 1e-6).reshape(shape))  # centres exactly on the sphere count


def shell_tolerance_ml(radius_mm, spacing):
    """|lattice count - analytic volume| stays within a shell one voxel diagonal thick."""
    return 4.0 * math.pi * radius_mm ** 2 * np.linalg.norm(spacing) / 1000.0


def test_margin_around_one_voxel_is_the_physical_ball():
    shape, centre, margin = (41, 31, 15), (20, 15, 7), 12.0
    core = np.zeros(shape, dtype=bool)
    core[centre] = True
    core = Volume.from_array(core, spacing_mm=ANISOTROPIC, direction_ras=oblique())
    plan = radiotherapy.standard_plan(core, margin_mm=margin)
    expected = ball(shape, ANISOTROPIC, centre, margin, oblique())
    np.testing.assert_array_equal(plan.array, expected.array)  # voxel for voxel, against brute-force distances
    assert metrics.volume_ml(plan) == pytest.approx(4 / 3 * math.pi * margin ** 3 / 1000,
                                                    abs=shell_tolerance_ml(margin, ANISOTROPIC))


def test_margin_around_a_sphere_matches_the_analytic_volume():
    shape, centre, radius, margin = (81, 61, 31), (40, 30, 15), 10.0, 15.0
    core = ball(shape, ANISOTROPIC, centre, radius)
    plan = radiotherapy.standard_plan(core, margin_mm=margin)
    r = radius + margin
    assert metrics.volume_ml(plan) == pytest.approx(4 / 3 * math.pi * r ** 3 / 1000,
                                                    abs=shell_tolerance_ml(r, ANISOTROPIC))
    assert np.all(plan.array[core.array])


def test_standard_plan_is_clipped_to_brain_and_kept_out_of_csf():
    shape = (30, 30, 30)
    core = ball(shape, (1, 1, 1), (15, 15, 15), 3.0)
    brain = np.zeros(shape, dtype=np.float32)
    brain[:, :20, :] = 1.0
    csf = np.zeros(shape, dtype=np.float32)
    csf[:8, :, :] = 0.9
    plan = radiotherapy.standard_plan(core, 10.0, brain_mask=core.like(brain), csf=core.like(csf), exclude_csf=True)
    assert not plan.array[:, 20:, :].any() and not plan.array[:8].any()
    assert plan.array[15, 19, 15] and plan.array[8, 15, 15]


def test_iso_volume_plan_matches_the_standard_volume_and_breaks_ties_deterministically():
    rng = np.random.default_rng(0)
    shape = (24, 20, 16)
    core = ball(shape, (1.5, 1.5, 1.5), (12, 10, 8), 3.0)
    standard = radiotherapy.standard_plan(core, 6.0)
    density = core.like(np.round(rng.random(shape), 1).astype(np.float32))  # many ties
    plan = radiotherapy.iso_volume_plan(density, int(standard.array.sum()))
    assert metrics.volume_ml(plan) == pytest.approx(metrics.volume_ml(standard), abs=density.geometry.voxel_volume_ml)
    again = radiotherapy.iso_volume_plan(density, int(standard.array.sum()))
    np.testing.assert_array_equal(plan.array, again.array)
    # Every voxel inside has at least the density of every voxel outside.
    assert density.array[plan.array].min() >= density.array[~plan.array].max()
    flat = radiotherapy.iso_volume_plan(density.like(np.full(shape, 0.5, np.float32)), 7)
    assert np.flatnonzero(flat.array).tolist() == list(range(7))  # equal densities: first voxels in C order


def test_threshold_plan():
    density = Volume.from_array(np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10))
    plan = radiotherapy.threshold_plan(density, 0.25)
    assert plan.array.sum() == np.count_nonzero(density.array >= 0.25)


def cube(shape, lo, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, a + size) for a in lo)] = True
    return Volume.from_array(mask, spacing_mm=(2.0, 2.0, 2.0))


def test_dice_and_coverage_on_hand_built_masks():
    a = cube((30, 20, 20), (5, 5, 5), 10)
    b = cube((30, 20, 20), (10, 5, 5), 10)  # half of a, shifted by 5 voxels
    assert metrics.dice(a, b) == pytest.approx(0.5)
    assert metrics.dice(a, a) == 1.0
    result = metrics.coverage(recurrence=b, plan=a)
    assert result["coverage"] == pytest.approx(0.5)
    assert result["missed_ml"] == pytest.approx(500 * 8 / 1000)
    assert result["recurrence_ml"] == pytest.approx(1000 * 8 / 1000)


def test_surface_distances_between_concentric_spheres():
    shape, centre, spacing = (61, 61, 61), (30, 30, 30), (1.0, 1.0, 1.0)
    inner, outer = ball(shape, spacing, centre, 10.0), ball(shape, spacing, centre, 16.0)
    d = metrics.surface_distances_mm(inner, outer)
    # Boundary voxel centres sit up to one voxel inside the true spheres, so distances are 6 mm within a voxel.
    assert d["hausdorff95_mm"] == pytest.approx(6.0, abs=1.0)
    assert d["mean_surface_distance_mm"] == pytest.approx(6.0, abs=1.0)
    assert metrics.surface_distances_mm(inner, inner)["hausdorff_mm"] == 0.0


def test_probability_map_of_samples_with_a_known_distribution():
    shape, n = (4, 5, 6), 400
    # In each voxel the samples are the quantiles (s + 0.5) / n of a uniform distribution on [0, b] with a
    # voxel-dependent b, so P(c >= t) = max(0, 1 - t / b) up to 1 / n.
    b = np.linspace(0.3, 1.0, np.prod(shape)).reshape(shape)
    quantiles = (np.arange(n) + 0.5) / n
    samples = (quantiles[:, None, None, None] * b[None]).astype(np.float32)
    t = 0.4
    expected = np.clip(1.0 - t / b, 0.0, 1.0)
    np.testing.assert_allclose(radiotherapy.probability_map(samples, t), expected, atol=1.0 / n + 1e-6)
    reference = Volume.from_array(np.zeros(shape, np.float32))
    plan, probability = radiotherapy.probabilistic_plan(samples, reference, t, 0.5)
    # Judged only where P is clearly off 0.5: within 1 / n of it the samples' P is a tie by construction.
    clear = np.abs(expected - 0.5) > 1.0 / n
    np.testing.assert_array_equal(plan.array[clear], (expected >= 0.5)[clear])
    assert clear.mean() > 0.9
    assert probability.geometry == reference.geometry


def test_mae_by_tissue_and_dice_at_levels():
    shape = (10, 10, 10)
    wm, gm, csf = (np.zeros(shape, np.float32) for _ in range(3))
    wm[:3], gm[3:6], csf[6:8] = 1.0, 1.0, 1.0
    truth = np.full(shape, 0.5, np.float32)
    predicted = truth + np.where(wm > 0, 0.1, 0) + np.where(gm > 0, -0.2, 0)
    v = Volume.from_array
    mae = metrics.mae_by_tissue(v(predicted), v(truth), v(wm), v(gm), v(csf))
    assert mae == pytest.approx({"wm": 0.1, "gm": 0.2, "csf": 0.0})
    scores = metrics.dice_at_levels(v(predicted), v(truth), levels=(0.55, 0.25))
    assert scores["0.55"] == 0.0  # only the prediction reaches 0.55 (in WM)
    assert scores["0.25"] == 1.0


def test_model_plan_covers_the_recurrence_at_least_as_well_as_the_standard_plan():
    """Synthetic case: core = c >= 0.6 at diagnosis, recurrence = c >= 0.6 after 120 more days."""
    from TumorPersonalizationLib.imaging.atlas import load_atlas

    atlas = load_atlas()
    seed = np.rint(atlas.wm.geometry.ras_to_index((-25.0, -10.0, 20.0))).astype(int)
    box = tuple(slice(s - 32, s + 32) for s in seed)
    wm, gm = atlas.wm.array[box], atlas.gm.array[box]
    now, later = Domain(wm, gm, atlas.wm.spacing_mm).simulate(0.3, 0.03, [250.0, 370.0], (32.0, 32.0, 32.0))
    volume = lambda a: Volume.from_array(a, spacing_mm=atlas.wm.spacing_mm)  # noqa: E731
    brain = volume((atlas.brain_mask.array[box] >= 0.5).astype(np.float32))
    plans = radiotherapy.make_plans(volume(now), volume(now >= 0.6), brain_mask=brain,
                                    recurrence=volume(later >= 0.6))
    covered = plans.report["recurrence"]
    assert covered["model"]["coverage"] >= covered["standard"]["coverage"]
    assert plans.report["model"]["volume_ml"] == pytest.approx(plans.report["standard"]["volume_ml"])


@pytest.mark.parametrize("call, message", [
    (lambda d, c: radiotherapy.standard_plan(c, -1.0), "margin"),
    (lambda d, c: radiotherapy.core_mask(c.like(np.zeros(c.shape))), "core is empty"),
    (lambda d, c: radiotherapy.core_mask(c.like(np.full(c.shape, 2))), "values present: 2"),
    (lambda d, c: radiotherapy.make_plans(d.like(np.where(d.array > 0.5, np.nan, d.array)), c), "NaN"),
    (lambda d, c: radiotherapy.make_plans(d.like(d.array * 2), c), "[0, 1]"),
    (lambda d, c: radiotherapy.make_plans(d, Volume.from_array(c.array, spacing_mm=(2, 2, 2))), "different grid"),
    (lambda d, c: radiotherapy.make_plans(d, c, brain_mask=d.like(np.zeros(d.shape))), "brain mask: the mask is empty"),
    (lambda d, c: metrics.coverage(c.like(np.zeros(c.shape, bool)), c), "recurrence: the mask is empty"),
    (lambda d, c: radiotherapy.make_plans(d, c, csf=d.like(d.array * 255)), "csf: CSF probabilities"),
    (lambda d, c: radiotherapy.make_plans(d, c, csf=d.like(np.where(d.array > 0.5, np.nan, 0.0))), "csf: .*NaN"),
    (lambda d, c: metrics.dice(c, c.like(np.full(c.shape, 3))), "binary mask"),
])
def test_bad_input_is_refused_clearly(call, message):
    shape = (20, 20, 20)
    density = Volume.from_array(np.linspace(0, 1, 8000, dtype=np.float32).reshape(shape))
    core = density.like(density.array > 0.9)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(density, core)


def test_iso_volume_plan_never_takes_voxels_without_tumor_cells():
    # A density that covers less than the standard plan's volume: the model plan stops at its support (plus the
    # core) instead of filling up with density-0 voxels in voxel order (which put them at the image's corner).
    shape = (24, 20, 16)
    core = ball(shape, (1.5, 1.5, 1.5), (12, 10, 8), 3.0)
    density = core.like(np.where(ball(shape, (1.5, 1.5, 1.5), (12, 10, 8), 4.5).array, 0.5, 0.0).astype(np.float32))
    plans = radiotherapy.make_plans(density, core, margin_mm=6.0)
    assert np.all(density.array[plans.model.array] > 0)
    assert plans.model.array.sum() == np.count_nonzero(density.array) < plans.standard.array.sum()
    assert "stops at its support" in plans.report["model"]["note"]
    empty = radiotherapy.make_plans(density.like(np.zeros(shape, np.float32)), core, margin_mm=6.0)
    np.testing.assert_array_equal(empty.model.array, core.array.astype(bool))  # the core only
