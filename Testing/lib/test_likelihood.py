"""The imaging likelihood: closed forms against direct evaluation, stability far from the threshold, priors,
and the bad inputs a user can give."""
import math

import numpy as np
import pytest

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, Volume
from TumorPersonalizationLib.inference.likelihood import (CalibrationProblem, Observation, bernoulli_log_likelihood,
                                                          build_prior, gaussian_log_likelihood, time_range_days)


def alpha_direct(u, uc, s):
    return 0.5 + 0.5 * np.sign(u - uc) * (1.0 - np.exp(-((u - uc) ** 2) / s ** 2))


def test_bernoulli_matches_the_direct_formula_and_stays_finite():
    u = np.linspace(0.0, 1.0, 201).astype(np.float32)
    uc, s = 0.3, 0.07
    a = alpha_direct(u.astype(np.float64), uc, s)
    inside = (a > 1e-6) & (a < 1 - 1e-6)  # where the direct formula is still accurate in float64
    for y in (0.0, 1.0, 0.25):
        with np.errstate(divide="ignore", invalid="ignore"):  # the direct formula breaks down: that is the point
            direct = y * np.log(a) + (1 - y) * np.log1p(-a)
        ours = bernoulli_log_likelihood(u, np.float32(y), uc, s)
        np.testing.assert_allclose(ours[inside], direct[inside], rtol=2e-4, atol=2e-5)
        assert np.all(np.isfinite(ours))
    # Far from the threshold the penalty is exactly log(0.5) - q, not -inf.
    far = bernoulli_log_likelihood(np.float32(1.0), np.float32(0.0), 0.05, 0.05)
    assert far == pytest.approx(math.log(0.5) - (0.95 / 0.05) ** 2, rel=1e-5)


def test_gaussian_log_likelihood():
    u, y = np.float32(0.6), np.float32(0.5)
    expected = -0.5 * ((0.5 - 0.9 * 0.6) / 0.1) ** 2 - math.log(0.1) - 0.5 * math.log(2 * math.pi)
    assert gaussian_log_likelihood(u, y, 0.9, 0.1) == pytest.approx(expected, rel=1e-5)
    # A zero is censored: the probability that b u + noise <= 0.
    from scipy.stats import norm
    censored = gaussian_log_likelihood(np.float32(0.1), np.float32(0.0), 0.9, 0.1)
    assert censored == pytest.approx(norm.logcdf(-0.9 * 0.1 / 0.1), rel=1e-5)


GRID = Geometry((30, 30, 30), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))


def masks(t1_radius=4, flair_radius=7):
    idx = np.indices(GRID.shape)
    r = np.sqrt(((idx - 15) ** 2).sum(axis=0))
    return Volume((r <= t1_radius).astype(np.uint8), GRID), Volume((r <= flair_radius).astype(np.uint8), GRID)


def test_prior_is_centred_on_the_lesion():
    t1, flair = masks()
    observation = Observation.from_volumes(t1, flair, None, GRID)
    prior = build_prior(observation)
    assert prior.names == ("Dw", "rho", "T", "x", "y", "z", "uc_T1Gd", "uc_FLAIR", "sigma_alpha")
    centre = GRID.index_to_ras([15, 15, 15])
    for d, name in enumerate("xyz"):
        i = prior.names.index(name)
        assert prior.low[i] < centre[d] < prior.high[i]
        assert (prior.high[i] - prior.low[i]) / 2 >= 5.0
    low, high = time_range_days(14.0)
    assert 20.0 <= low < high <= 1500.0


def test_pet_adds_two_parameters_and_is_normalised():
    t1, flair = masks()
    pet = Volume(flair.array * 7.0, GRID)
    observation = Observation.from_volumes(t1, flair, pet, GRID)
    assert observation.pet.array.max() == pytest.approx(1.0)
    assert build_prior(observation).names[-2:] == ("b", "sigma")


def test_the_true_parameters_score_best():
    """On a phantom, the data's own parameters beat shifted ones (the likelihood points the right way)."""
    from conftest import phantom_tissue

    from TumorPersonalizationLib.imaging.tissue import TissueMaps
    from TumorPersonalizationLib.synthetic import synthetic_case

    wm, gm, csf = phantom_tissue()
    geometry = Geometry(wm.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    tissue = TissueMaps(Volume(wm, geometry), Volume(gm, geometry), Volume(csf, geometry))
    seed = tuple(geometry.index_to_ras([12, 22, 18]))
    case = synthetic_case(tissue, 0.3, 0.05, 150.0, seed, uc_t1gd=0.7, uc_flair=0.25)
    observation = Observation.from_volumes(case.t1gd, case.flair, None, geometry)
    prior = build_prior(observation)
    problem = CalibrationProblem(tissue.wm, tissue.gm, observation, prior)
    truth = [0.3, 0.05, 150.0, *seed, 0.7, 0.25, 0.05]
    shifted = [[0.6, 0.05, 150.0, *seed, 0.7, 0.25, 0.05], [0.3, 0.05, 150.0, seed[0] + 4, seed[1], seed[2],
                                                          0.7, 0.25, 0.05], [0.3, 0.05, 150.0, *seed, 0.7, 0.4, 0.05]]
    scores = problem(prior.to_transformed(np.array([truth] + shifted)))
    assert np.all(scores[0] > scores[1:])
    outside = problem(prior.to_transformed(np.array([[0.3, 0.05, 150.0, 39.0, 39.0, 39.0, 0.7, 0.25, 0.05]])))
    assert outside[0] == -np.inf  # a seed in the background is impossible, not an error


@pytest.mark.parametrize("make, message", [
    (lambda t1, fl: (t1.like(np.zeros_like(t1.array)), fl, None), "T1Gd segmentation is empty"),
    (lambda t1, fl: (fl, t1, None), "smaller than the T1Gd"),
    (lambda t1, fl: (t1, Volume(fl.array, Geometry((30, 30, 30), (1.0, 2.0, 2.0), (0, 0, 0))), None), "different grid"),
    (lambda t1, fl: (t1, fl.like(fl.array * 3), None), "binary segmentation"),
    (lambda t1, fl: (t1, fl, fl.like(fl.array - 0.5)), "negative values"),
    (lambda t1, fl: (t1, fl, fl.like(np.where(fl.array > 0, np.nan, 0.0))), "NaN"),
])
def test_bad_observations(make, message):
    t1, flair, pet = make(*masks())
    with pytest.raises(InputError, match=message):
        Observation.from_volumes(t1, flair, pet, GRID)
