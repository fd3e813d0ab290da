"""Transitional MCMC on targets with known answers, and the executors it runs through."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.execution import DaskExecutor, InlineExecutor, LocalPoolExecutor, make_executor
from TumorPersonalizationLib.inference import tmcmc
from TumorPersonalizationLib.inference.likelihood import FidelityPair
from TumorPersonalizationLib.inference.priors import BoxPrior

BOX = BoxPrior(("a", "b"), (-10.0, -10.0), (10.0, 10.0), (False, False))
LOG_BOX_VOLUME = np.log(400.0)


class GaussianLogLikelihood:
    """A normalised correlated Gaussian: the evidence under the uniform box prior is 1 / box volume."""

    mean = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.8], [0.8, 2.0]])

    def __call__(self, z):
        return multivariate_normal(self.mean, self.cov).logpdf(np.atleast_2d(z)).reshape(-1)


def bimodal(z):
    low = multivariate_normal([-3.0, 0.0], 0.25 * np.eye(2)).logpdf(z)
    high = multivariate_normal([3.0, 1.0], 0.25 * np.eye(2)).logpdf(z)
    return np.logaddexp(np.log(0.3) + low, np.log(0.7) + high).reshape(-1)


def test_correlated_gaussian_posterior_and_evidence():
    target = GaussianLogLikelihood()
    result = tmcmc.sample(target, BOX, n_samples=2048, seed=1)
    x = result.natural
    n = len(x)
    # Mean within 4 Monte Carlo standard errors (resampling correlates draws: allow an effective size of n / 4).
    standard_error = np.sqrt(np.diag(target.cov) / (n / 4))
    assert np.all(np.abs(x.mean(axis=0) - target.mean) < 4 * standard_error)
    np.testing.assert_allclose(np.cov(x.T), target.cov, atol=0.15)
    assert result.log_evidence == pytest.approx(-LOG_BOX_VOLUME, abs=0.1)
    assert result.stages[-1].beta == 1.0
    assert [s.beta for s in result.stages] == sorted(s.beta for s in result.stages)
    assert result.evaluations > n


def test_bimodal_target_finds_both_modes_with_their_weights():
    result = tmcmc.sample(bimodal, BOX, n_samples=2048, seed=2)
    x = result.natural
    share_low = np.mean(x[:, 0] < 0)
    assert share_low == pytest.approx(0.3, abs=0.05)
    np.testing.assert_allclose(x[x[:, 0] < 0].mean(axis=0), [-3.0, 0.0], atol=0.15)
    np.testing.assert_allclose(x[x[:, 0] > 0].mean(axis=0), [3.0, 1.0], atol=0.15)
    assert result.log_evidence == pytest.approx(-LOG_BOX_VOLUME, abs=0.15)


def test_same_seed_same_result_and_log_scale_prior():
    prior = BoxPrior(("rate",), (0.01,), (1.0,), (True,))
    # Likelihood flat in the natural scale: the posterior must stay uniform on [0.01, 1], not log-uniform.
    flat = lambda z: np.zeros(len(z))  # noqa: E731
    first = tmcmc.sample(flat, prior, n_samples=4000, seed=3)
    second = tmcmc.sample(flat, prior, n_samples=4000, seed=3)
    np.testing.assert_array_equal(first.samples, second.samples)
    assert first.log_evidence == pytest.approx(0.0, abs=1e-12)
    x = first.natural[:, 0]
    assert np.mean(x < 0.5) == pytest.approx((0.5 - 0.01) / 0.99, abs=0.03)


def test_summary_reports_map_mean_and_interval():
    result = tmcmc.sample(GaussianLogLikelihood(), BOX, n_samples=1024, seed=4)
    summary = result.summary()
    lo, hi = summary["a"]["ci95"]
    assert lo < 1.0 < hi and hi - lo == pytest.approx(2 * 1.96, rel=0.2)
    assert abs(summary["a"]["map"] - 1.0) < 0.5


def test_bad_inputs():
    with pytest.raises(InputError, match="n_samples"):
        tmcmc.sample(bimodal, BOX, n_samples=3)
    with pytest.raises(InputError, match="-inf for every prior sample"):
        tmcmc.sample(lambda z: np.full(len(z), -np.inf), BOX, n_samples=64)
    with pytest.raises(InputError, match="lower bound"):
        BoxPrior(("a",), (1.0,), (0.0,), (False,))
    with pytest.raises(InputError, match="positive lower bound"):
        BoxPrior(("a",), (0.0,), (1.0,), (True,))


def square_sum(batch):
    return np.sum(np.asarray(batch) ** 2, axis=1)


def test_executors_return_results_in_order():
    batch = np.arange(60, dtype=float).reshape(30, 2)
    expected = square_sum(batch)
    inline = make_executor(square_sum, workers=1)
    assert isinstance(inline, InlineExecutor)
    np.testing.assert_array_equal(inline(batch), expected)
    pool = make_executor(square_sum, workers=2)
    assert isinstance(pool, LocalPoolExecutor)
    try:
        np.testing.assert_array_equal(pool(batch), expected)
    finally:
        pool.close()


def test_dask_local_cluster_runs_the_sampler():
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = make_executor(GaussianLogLikelihood(), dask_scheduler=cluster.scheduler_address)
        assert isinstance(executor, DaskExecutor) and executor.workers == 2
        try:
            result = tmcmc.sample(executor, BOX, n_samples=512, seed=5)
            local = tmcmc.sample(GaussianLogLikelihood(), BOX, n_samples=512, seed=5)
        finally:
            executor.close()
    np.testing.assert_allclose(result.samples, local.samples)  # same numbers wherever they are computed


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(InputError, match="cannot connect"):
        make_executor(square_sum, dask_scheduler="tcp://127.0.0.1:9")


def slow_square_sum(batch):
    import time

    time.sleep(60.0)
    return square_sum(batch)


def test_an_aborted_pool_stops_its_running_chunks_at_once():
    # After Ctrl-C or Cancel the CLI must exit within seconds, not when the running chunks end.
    import threading
    import time

    pool = make_executor(slow_square_sum, workers=2)
    runner = threading.Thread(target=lambda: pytest.raises(Exception, pool, np.ones((4, 2))), daemon=True)
    runner.start()
    time.sleep(3.0)  # the workers are inside their 60 s chunks
    processes = list(pool._pool._processes.values())
    started = time.perf_counter()
    pool.close(abort=True)
    # The pool's own manager thread reaps the workers too, so is_alive() may say True for a moment after they died.
    while any(p.is_alive() for p in processes) and time.perf_counter() - started < 10:
        time.sleep(0.1)
    assert time.perf_counter() - started < 10 and not any(p.is_alive() for p in processes)


def test_a_script_pool_ends_its_workers_when_the_script_is_interrupted():
    # Data-generation scripts run their shards in execution.process_pool: Ctrl-C or SIGTERM (KeyboardInterrupt via
    # errors.run_script) must not leave workers computing queued shards.
    import time

    from TumorPersonalizationLib.execution import process_pool

    processes = []
    started = None
    with pytest.raises(KeyboardInterrupt):
        with process_pool(2) as pool:
            futures = [pool.submit(slow_square_sum, np.ones((2, 2))) for _ in range(4)]
            time.sleep(3.0)  # two workers inside their 60 s tasks, two tasks queued
            processes = list(pool._processes.values())
            started = time.perf_counter()
            raise KeyboardInterrupt
    while any(p.is_alive() for p in processes) and time.perf_counter() - started < 10:
        time.sleep(0.1)
    assert len(processes) == 2 and not any(p.is_alive() for p in processes)
    assert time.perf_counter() - started < 10
    assert not any(f.done() and not f.cancelled() and f.exception() is None for f in futures)  # none ran to its end


class ShiftedGaussian:
    """A sharp normalised Gaussian likelihood, optionally biased: its mean moved by ``shift`` of its stds and its
    covariance widened by ``widen`` (a coarse grid's likelihood stands in for the fine one this way)."""

    mean = np.array([1.0, -2.0])
    cov = 0.01 * np.array([[1.0, 0.8], [0.8, 2.0]])

    def __init__(self, shift=0.0, widen=1.0):
        self.calls = 0
        self.density = multivariate_normal(self.mean + shift * np.sqrt(np.diag(self.cov)), widen * self.cov)

    def __call__(self, z):
        self.calls += len(z)
        return self.density.logpdf(np.atleast_2d(z)).reshape(-1)


@pytest.mark.parametrize("delayed_acceptance, fine_share", [(False, 0.8), (True, 0.45)])
def test_multifidelity_samples_the_fine_posterior_despite_a_biased_coarse_likelihood(delayed_acceptance, fine_share):
    fine, coarse = ShiftedGaussian(), ShiftedGaussian(shift=2.0, widen=2.0)
    result = tmcmc.sample(fine, BOX, n_samples=2048, seed=6, coarse_log_likelihood=coarse, switch_beta=0.05,
                          delayed_acceptance=delayed_acceptance)
    x = result.natural
    standard_error = np.sqrt(np.diag(fine.cov) / (len(x) / 4))
    assert np.all(np.abs(x.mean(axis=0) - fine.mean) < 4 * standard_error)
    np.testing.assert_allclose(np.cov(x.T), fine.cov, atol=0.15 * 0.02)
    assert [s.phase for s in result.stages][0] == "coarse" and result.stages[-1].phase == "fine"
    assert {s.phase for s in result.stages} == {"coarse", "bridge", "fine"}
    assert result.evaluations_by_grid == {"coarse": coarse.calls, "fine": fine.calls}
    # Cheaper on the fine grid than sampling it alone, with the same population.
    fine_only = ShiftedGaussian()
    tmcmc.sample(fine_only, BOX, n_samples=2048, seed=6)
    assert fine.calls < fine_share * fine_only.calls
    np.testing.assert_allclose(result.log_likelihood, fine(result.samples))  # the reported values are the fine ones


def test_multifidelity_restores_mode_weights_the_coarse_likelihood_gets_wrong():
    def reversed_weights(z):  # the coarse model puts 70 % on the wrong mode
        low = multivariate_normal([-3.0, 0.0], 0.3 * np.eye(2)).logpdf(z)
        high = multivariate_normal([3.0, 1.0], 0.3 * np.eye(2)).logpdf(z)
        return np.logaddexp(np.log(0.7) + low, np.log(0.3) + high).reshape(-1)

    result = tmcmc.sample(bimodal, BOX, n_samples=2048, seed=7, coarse_log_likelihood=reversed_weights,
                          switch_beta=0.1)
    assert np.mean(result.natural[:, 0] < 0) == pytest.approx(0.3, abs=0.05)


def test_multifidelity_switch_must_lie_inside_the_path():
    with pytest.raises(InputError, match="switch_beta"):
        tmcmc.sample(bimodal, BOX, n_samples=64, coarse_log_likelihood=bimodal, switch_beta=1.0)


class Constant:
    def __init__(self, value):
        self.value = value

    def __call__(self, z):
        return np.full(len(z), self.value) + np.asarray(z)[:, 0]


def test_fidelity_pair_routes_each_row_to_its_grid_through_one_pool():
    pair = FidelityPair(Constant(-100.0), Constant(-1.0))
    z = np.array([[0.5, 0.0], [1.5, 0.0], [2.5, 0.0]])
    executor = LocalPoolExecutor(pair, workers=2)
    try:
        np.testing.assert_allclose(FidelityPair.on(executor, FidelityPair.COARSE)(z), [-99.5, -98.5, -97.5])
        np.testing.assert_allclose(FidelityPair.on(executor, FidelityPair.FINE)(z), [-0.5, 0.5, 1.5])
    finally:
        executor.close()
