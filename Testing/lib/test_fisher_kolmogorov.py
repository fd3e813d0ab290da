"""Fisher-Kolmogorov solver against independent truths: conservation, analytic decay rates, front speed, a
fine-step RK4 reference, symmetry, and the bad inputs a user can give."""
import math
import re

import numpy as np
import pytest

from TumorPersonalizationLib.errors import Cancelled, InputError
from TumorPersonalizationLib.models import fisher_kolmogorov as fk

SPACING = (2.0, 2.0, 2.0)
SEED = (12.0, 22.0, 18.0)  # in the phantom's white matter, off-centre


def relative_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_mass_is_conserved_without_proliferation(phantom):
    wm, gm, _ = phantom
    domain = fk.Domain(wm, gm, SPACING)
    initial = domain.seed_density(SEED).astype(np.float64).sum()
    # rho must be > 0 by the public contract; 1e-12/day changes the mass by ~1e-10 over 200 days.
    out = domain.simulate(0.8, 1e-12, [20.0, 200.0], SEED)
    for c in out:
        assert abs(c.astype(np.float64).sum() - initial) / initial < 1e-5
    assert (out[1] > 1e-4).sum() > 3 * (out[0] > 1e-4).sum()  # it did spread


def test_no_tumor_where_no_tissue_is_reachable(phantom):
    wm, gm, _ = phantom
    wm, gm = wm.copy(), gm.copy()
    # An island of white matter sealed off from the rest by a CSF shell two voxels thick.
    wm[30:36, 30:36, 10:16] = 0.0
    gm[30:36, 30:36, 10:16] = 0.0
    wm[32:34, 32:34, 12:14] = 1.0
    domain = fk.Domain(wm, gm, SPACING)
    c = domain.simulate(1.5, 0.2, 400.0, SEED)
    assert c[32:34, 32:34, 12:14].max() == 0.0
    outside = (wm + gm) < fk.DOMAIN_THRESHOLD
    assert c[outside].max() == 0.0
    assert c.max() > 0.99


def test_pure_diffusion_mode_decays_at_the_discrete_eigenvalue():
    """A cosine mode of the 1D Neumann Laplacian decays exactly as exp(-lambda t) in the semi-discrete system."""
    n, h, d = 48, 1.5, 0.7
    wm = np.ones((n, 1, 1), dtype=np.float32)
    gm = np.zeros_like(wm)
    x = np.arange(n)
    mode = np.cos(np.pi * (x + 0.5) / n)[:, None, None]
    initial = (0.5 + 0.3 * mode).astype(np.float32)
    lam = 2.0 * d / h ** 2 * (1.0 - math.cos(math.pi / n))
    t = 150.0
    domain = fk.Domain(wm, gm, (h, h, h))
    c = domain.simulate(d, 1e-12, t, None, initial_density=initial)
    amplitude = float(np.sum((c - 0.5) * mode) / np.sum(mode * mode))
    assert amplitude == pytest.approx(0.3 * math.exp(-lam * t), rel=2e-3)


def front_position(profile, spacing, level=0.5):
    """Distance (mm) from the first voxel centre to where the monotone profile drops through ``level``."""
    i = int(np.nonzero(profile < level)[0][0])
    frac = (profile[i - 1] - level) / (profile[i - 1] - profile[i])
    return (i - 1 + frac) * spacing


def test_planar_front_travels_at_the_fisher_speed():
    d, rho, h = 1.0, 0.1, 1.0
    wm = np.ones((560, 1, 1), dtype=np.float32)
    domain = fk.Domain(wm, np.zeros_like(wm), (h, h, h))
    t1, t2 = 400.0, 800.0
    c = domain.simulate(d, rho, [t1, t2], (0.0, 0.0, 0.0))
    measured = (front_position(c[1, :, 0, 0], h) - front_position(c[0, :, 0, 0], h)) / (t2 - t1)
    fisher = 2.0 * math.sqrt(d * rho)
    # Fronts from compact initial data lag by (3/2) sqrt(D/rho) ln t (Bramson); over [400, 800] days that is 1.3%.
    assert measured == pytest.approx(fisher, rel=0.03)
    bramson = fisher - 1.5 * math.sqrt(d / rho) * math.log(t2 / t1) / (t2 - t1)
    assert measured == pytest.approx(bramson, rel=0.01)


@pytest.fixture(scope="module")
def rk4_reference():
    from conftest import phantom_tissue

    wm, gm, _ = phantom_tissue()
    domain = fk.Domain(wm, gm, SPACING)
    return domain, domain.simulate(0.5, 0.1, 60.0, SEED, steps=fk.StepSettings(method="rk4"))


def test_converges_to_the_fine_step_reference_as_the_step_shrinks(rk4_reference):
    domain, reference = rk4_reference
    errors = []
    for step in (4.0, 2.0, 1.0):
        fixed = fk.StepSettings(step_tolerance=1e9, max_step_days=step, first_step_days=step)
        errors.append(relative_l2(domain.simulate(0.5, 0.1, 60.0, SEED, steps=fixed), reference))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert min(orders) > 1.0, (errors, orders)  # Strang splitting measures ~1.9


def test_default_steps_are_accurate(rk4_reference):
    domain, reference = rk4_reference
    assert relative_l2(domain.simulate(0.5, 0.1, 60.0, SEED), reference) < 0.01


def test_symmetric_domain_and_centred_seed_give_a_symmetric_result():
    from conftest import phantom_tissue

    wm, gm, _ = phantom_tissue(shape=(31, 33, 29))
    centre = ((31 - 1) / 2, (33 - 1) / 2 + 5, (29 - 1) / 2)  # on the i and k mirror planes, off-centre in j
    c = fk.Domain(wm, gm, SPACING).simulate(0.6, 0.08, 90.0, centre)
    assert c.max() > 0.5
    np.testing.assert_allclose(c, c[::-1, :, :], atol=2e-6)
    np.testing.assert_allclose(c, c[:, :, ::-1], atol=2e-6)


def test_values_stay_in_the_unit_interval(phantom):
    wm, gm, _ = phantom
    domain = fk.Domain(wm, gm, SPACING, ratio=100.0)
    for dw, rho, t in [(1.5, 0.2, 300.0), (0.02, 0.002, 30.0), (0.3, 0.2, 1500.0)]:
        c = domain.simulate(dw, rho, t, SEED)
        assert c.dtype == np.float32
        assert c.min() >= 0.0 and c.max() <= 1.0


def test_outputs_at_several_times_match_separate_runs(phantom):
    wm, gm, _ = phantom
    domain = fk.Domain(wm, gm, SPACING)
    several = domain.simulate(0.3, 0.05, [150.0, 50.0], SEED)
    assert several.shape == (2,) + wm.shape
    assert several[1].sum() < several[0].sum()  # order of the request is kept
    alone = domain.simulate(0.3, 0.05, 50.0, SEED)
    assert relative_l2(several[1], alone) < 0.01


def test_batch_matches_single_runs(phantom):
    wm, gm, _ = phantom
    domain = fk.Domain(wm, gm, SPACING)
    dw, rho, t = [0.1, 0.9], [0.02, 0.15], [200.0, 40.0]
    seeds = [SEED, (26.0, 20.0, 18.0)]
    seen = []
    batch = domain.simulate_batch(dw, rho, t, seeds, workers=2, progress=lambda done, total: seen.append(done))
    assert batch.shape == (2,) + wm.shape and seen[-1] == 2
    for b in range(2):
        # The batch runs the serial kernels; so does this single run: the same arithmetic, the same numbers
        # (the threaded kernels round differently, ~3e-7, and that may change a step count on another CPU).
        single = domain.simulate(dw[b], rho[b], t[b], seeds[b], parallel=False)
        np.testing.assert_array_equal(batch[b], single)


def test_progress_is_reported_and_cancel_stops(phantom):
    wm, gm, _ = phantom
    fractions = []
    fk.simulate(wm, gm, SPACING, 0.5, 0.05, 100.0, SEED, progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)

    def cancel(fraction):
        if fraction > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        fk.simulate(wm, gm, SPACING, 0.5, 0.05, 100.0, SEED, progress=cancel)


def test_rkl2_stage_count_meets_the_stability_bound():
    for ratio in [0.5, 1.0, 1.01, 7.3, 100.0, 5000.0]:
        s = fk.rkl2_stage_count(ratio, 1.0)
        assert (s * s + s - 2) / 4.0 >= ratio
        assert s == 2 or ((s - 1) ** 2 + (s - 1) - 2) / 4.0 < ratio


@pytest.mark.parametrize("make, message", [
    (lambda wm, gm: (wm, gm[:-1]), "gm: shape"),
    (lambda wm, gm: (np.where(wm > 0.5, np.nan, wm), gm), "wm: contains NaN"),
    (lambda wm, gm: (wm * 1.5, gm), "wm: probabilities must lie in [0, 1]"),
    (lambda wm, gm: (wm, gm - 0.2), "gm: probabilities must lie in [0, 1]"),
    (lambda wm, gm: (np.zeros_like(wm), np.zeros_like(gm)), "no voxel has WM + GM"),
])
def test_bad_tissue_maps_are_refused(phantom, make, message):
    wm, gm = make(*phantom[:2])
    with pytest.raises(InputError, match=re.escape(message)):
        fk.Domain(wm, gm, SPACING)


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed_index=(-3.0, 10.0, 10.0)), "outside the image"),
    (dict(seed_index=(19.5, 21.5, 17.5)), "CSF or background"),  # the ventricle
    (dict(seed_index=(0.0, 0.0, 0.0)), "CSF or background"),
    (dict(dw_mm2_per_day=0.0), "Dw"),
    (dict(rho_per_day=-0.1), "rho"),
    (dict(days=float("nan")), "T"),
])
def test_bad_parameters_are_refused(phantom, kwargs, message):
    args = dict(dw_mm2_per_day=0.5, rho_per_day=0.05, days=100.0, seed_index=SEED)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        fk.Domain(*phantom[:2], SPACING).simulate(**args)


def test_very_fast_growth_fills_the_reachable_tissue_instead_of_vanishing():
    # exp(0.5 rho dt) used to overflow float32 once 0.5 rho dt > 88 (rho = 2/day, 2000 days: the steps grow to 100
    # days): every voxel turned NaN, then 0; with rho = 20/day math.exp itself raised. The logistic's fixed point
    # is 1: the tumor fills the island of white matter and cannot enter the CSF around it.
    wm = np.zeros((14, 14, 14), np.float32)
    wm[4:10, 4:10, 4:10] = 1.0
    domain = fk.Domain(wm, np.zeros_like(wm), SPACING)
    for rho_per_day in (2.0, 20.0):
        c = domain.simulate(0.1, rho_per_day, 2000.0, (6.5, 7.0, 7.0))
        assert np.isfinite(c).all()
        assert c[4:10, 4:10, 4:10].min() > 1 - 1e-6
        assert c[wm == 0].max() == 0.0


def test_a_seed_between_the_centres_of_a_coarse_grid_still_starts_a_tumor():
    # 6 mm voxels: the 4.5 mm seed ball around a voxel corner reaches no voxel centre.
    wm = np.ones((10, 10, 10), np.float32)
    domain = fk.Domain(wm, np.zeros_like(wm), (6.0, 6.0, 6.0))
    seed = (4.5, 4.5, 4.5)
    c0 = domain.seed_density(seed)
    # The ball's volume (1 within 1.5 mm, cosine taper to 4.5 mm), integrated independently on a fine grid.
    h = 0.05
    axis = np.arange(-4.5, 4.5 + h / 2, h)
    r = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    profile = np.where(r <= 1.5, 1.0, np.where(r < 4.5, 0.5 * (1 + np.cos(np.pi * (r - 1.5) / 3.0)), 0.0))
    assert c0.sum() * 216.0 == pytest.approx(profile.sum() * h ** 3, rel=1e-3)
    c = domain.simulate(0.5, 0.05, 100.0, seed)
    assert c.max() > 0.5


_RUN_IN_FRESH_PROCESS = """
import sys
import numpy as np
sys.path.insert(0, {testing!r})
from conftest import phantom_tissue
from TumorPersonalizationLib.models import fisher_kolmogorov as fk
wm, gm, _ = phantom_tissue()
np.save(sys.argv[1], fk.Domain(wm, gm, {spacing!r}).simulate(0.8, 0.1, 150.0, {seed!r}))
"""


def test_first_run_and_later_runs_agree_bit_for_bit(tmp_path):
    # The first process compiles the kernels and writes numba's cache; the second loads them from it. With
    # fastmath the two gave densities ~1e-6 apart: the same command's first run differed from every later one.
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = _RUN_IN_FRESH_PROCESS.format(testing=str(Path(__file__).parent), spacing=SPACING, seed=SEED)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache")}
    for name in ("compiled", "cached"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}.npy")], env=env, check=True)
    compiled, cached = np.load(tmp_path / "compiled.npy"), np.load(tmp_path / "cached.npy")
    assert compiled.max() > 0.5  # a tumor grew
    np.testing.assert_array_equal(compiled, cached)
    assert any((tmp_path / "numba_cache").rglob("*.nbi"))  # the second run did load a cache
