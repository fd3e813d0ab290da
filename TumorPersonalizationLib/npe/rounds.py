"""Sequential NPE for one patient: simulate from the current proposal, train, evaluate at the patient's
observation, repeat until the posterior stops moving.

Round 1 draws from the prior (or, when amortised weights are given, from the amortised network's posterior at the
patient's observation); every later round draws from the previous round's posterior, truncated to the prior box.
The network is trained further each round, never rebuilt (warm start), and sbi corrects for the proposal in
closed form (:mod:`.estimator`).

Stopping rule (:func:`posterior_change`): after each round the posterior's per-parameter mean and standard
deviation are compared with the previous round's; when the mean has moved by less than ``tolerance`` standard
deviations and the standard deviation has changed by less than a factor exp(``tolerance``) in every parameter,
further rounds would refine little, and the rounds stop.

Diagnostics per round: the importance weights prior / proposal of the round's draws (:func:`importance_weights`,
the thesis' eq. 3 weights) give the effective sample size relative to a prior draw, a measure of how far the
proposal has concentrated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import estimator as est


def importance_weights(prior_log_prob, proposal_log_prob) -> np.ndarray:
    """Self-normalised weights p(theta) / q(theta) of draws from a proposal q (they sum to 1).

    Parameters
    ----------
    prior_log_prob, proposal_log_prob : (n,) array
        Log densities of the draws; either may be unnormalised (a constant cancels). -inf prior: weight 0.

    Returns
    -------
    (n,) float64
    """
    log_w = np.asarray(prior_log_prob, np.float64) - np.asarray(proposal_log_prob, np.float64)
    finite = np.isfinite(log_w)
    if not finite.any():
        return np.zeros_like(log_w)
    log_w = np.where(finite, log_w - log_w[finite].max(), -np.inf)
    w = np.exp(log_w)
    return w / w.sum()


def effective_sample_size(weights) -> float:
    """Kish's effective sample size 1 / sum(w^2) of normalised weights."""
    w = np.asarray(weights, np.float64)
    total = float(np.sum(w ** 2))
    return 1.0 / total if total > 0 else 0.0


def posterior_change(previous: np.ndarray, current: np.ndarray) -> float:
    """How far a posterior moved between rounds: the largest, over parameters, of |mean change| / current std and
    |log(std ratio)|. (n, dim) samples each; 0 for identical sample sets."""
    m0, m1 = previous.mean(axis=0), current.mean(axis=0)
    s0, s1 = previous.std(axis=0) + 1e-12, current.std(axis=0) + 1e-12
    return float(max(np.max(np.abs(m1 - m0) / s1), np.max(np.abs(np.log(s1 / s0)))))


@dataclass
class RoundRecord:
    """One round, as the report lists it."""

    round: int
    proposal: str                  # "prior", "amortised posterior" or "round k posterior"
    simulations: int               # forward runs spent (valid or not)
    valid: int                     # simulations used for training (seed inside WM/GM)
    epochs: int                    # training epochs of this round
    validation_loss: float         # best held-out -log q(theta | x) of this round
    effective_sample_fraction: float  # ESS of the prior/proposal weights of the draws, as a fraction of them
    change: float | None           # posterior_change against the previous posterior (None in round 1)
    simulation_s: float
    training_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RoundsResult:
    """The final posterior and how it was reached."""

    posterior: object              # sbi DirectPosterior at the patient's observation
    samples: np.ndarray            # (n, dim) scaled draws from it
    log_prob: np.ndarray           # (n,) their unnormalised log posterior density
    records: list = field(default_factory=list)
    stopped: str = ""              # why the rounds ended

    @property
    def simulations(self) -> int:
        return sum(r.simulations for r in self.records)

    @property
    def map_index(self) -> int:
        return int(np.argmax(self.log_prob))


def run_rounds(simulate, problem, config: dict, *, simulations: int, max_rounds: int, tolerance: float,
               posterior_samples: int, seed: int, progress=None, amortised=None, max_epochs: int | None = None
               ) -> RoundsResult:
    """Sequential NPE on one case.

    Parameters
    ----------
    simulate : callable(theta (m, dim) float64, progress(fraction)) -> (m, Cv * N^3) float32
        Simulated observation channels, NaN rows for invalid draws (:class:`.simulator.NPESimulator` through an
        executor, batched so that ``progress`` can stop it).
    problem : simulator.CaseProblem
    config : dict
        NPE config (network and training sections).
    simulations : int
        Simulations per round.
    max_rounds : int
    tolerance : float
        Stop when :func:`posterior_change` falls below it (from round 2 on).
    posterior_samples : int
        Draws from each round's posterior (for the stopping rule and, in the end, the result).
    seed : int
    progress : callable(fraction, message) or None
    amortised : estimator or None
        A trained network (:func:`.estimator.load_weights`): its posterior at the observation is round 1's
        proposal and its weights the starting point.
    max_epochs : int, optional
        Override of the config's maximum epochs per round.
    """
    progress = progress or (lambda fraction, message=None: None)
    prior = est.box_prior(problem.low, problem.high)
    in_channels = problem.observed.shape[0]
    trainer = est.make_trainer(prior, config, in_channels, estimator=amortised)
    if amortised is not None:
        proposal, name = est.direct_posterior(amortised, prior, problem.observed), "amortised posterior"
        previous = est.sample(proposal, posterior_samples, seed)
    else:
        proposal, name, previous = prior, "prior", None
    records, result = [], None
    for index in range(max_rounds):
        share = (index / max_rounds, (index + 1) / max_rounds)
        step = lambda f, text=None, a=share[0], b=share[1]: progress(a + (b - a) * f, text)  # noqa: E731
        step(0.0, f"round {index + 1}: simulating {simulations} draws from the {name}")
        started = time.perf_counter()
        theta = est.sample(proposal, simulations, seed + 1000 * index) if proposal is not prior else \
            np.asarray(_prior_draws(prior, simulations, seed + 1000 * index))
        x = simulate(theta, lambda f: step(0.8 * f, f"round {index + 1}: simulating"))
        valid = np.all(np.isfinite(x), axis=1)
        if not valid.any():
            from ..errors import InputError

            raise InputError("NPE: no draw of the prior had its seed inside white or grey matter; check the "
                             "tissue maps and the lesion position")
        simulated = time.perf_counter()
        weights = importance_weights(est.log_prob(prior, theta), est.log_prob(proposal, theta)) \
            if proposal is not prior else np.full(len(theta), 1.0 / len(theta))
        step(0.8, f"round {index + 1}: training on {int(valid.sum())} simulations")
        estimator, summary = est.append_and_train(trainer, theta[valid], problem.assemble(x[valid]),
                                                  None if proposal is prior else proposal, config, max_epochs)
        posterior = est.build_posterior(trainer, estimator, prior, problem.observed)
        samples = est.sample(posterior, posterior_samples, seed + 1000 * index + 1)
        change = posterior_change(previous, samples) if previous is not None else None
        records.append(RoundRecord(index + 1, name, len(theta), int(valid.sum()), summary["epochs"],
                                   summary["best_validation_loss"], effective_sample_size(weights) / len(theta),
                                   change, simulated - started, time.perf_counter() - simulated))
        result = RoundsResult(posterior, samples, est.log_prob(posterior, samples), records)
        step(1.0, f"round {index + 1} done" + (f": posterior change {change:.2g}" if change is not None else ""))
        if change is not None and change < tolerance:
            result.stopped = f"posterior change {change:.3g} < tolerance {tolerance:g} after round {index + 1}"
            break
        proposal, name, previous = posterior, f"round {index + 1} posterior", samples
    if not result.stopped:
        result.stopped = f"maximum number of rounds ({max_rounds}) reached"
    return result


def _prior_draws(prior, n: int, seed: int) -> np.ndarray:
    import torch

    torch.manual_seed(int(seed))
    return prior.sample((int(n),)).double().numpy()

