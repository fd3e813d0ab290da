"""Transitional Markov chain Monte Carlo (Ching & Chen 2007, with the adaptive proposal scale of Betz et al. 2016).

The sampler moves a population of ``n_samples`` points from the prior to the posterior through tempered targets
p_j(θ) ∝ prior(θ) L(θ)^β_j, 0 = β_0 < β_1 < ... < β_m = 1:

1. choose β_{j+1} by bisection so that the importance weights w = L^(β_{j+1} - β_j) have the target coefficient
   of variation (1.0 by default);
2. add log mean(w) to the log evidence;
3. resample the population by the weights;
4. move every point by Metropolis steps targeting p_{j+1}, with Gaussian proposals of covariance
   scale² × (weighted sample covariance); the scale adapts towards 23 % acceptance.

Once β = 1, ``final_steps`` more Metropolis sweeps spread out the duplicates that the last resampling left (with a
small population and one step per stage the posterior would otherwise look narrower than it is).

Likelihoods are evaluated in batches through an executor (see :mod:`TumorPersonalizationLib.execution`), so a
stage's 2048 forward simulations run in parallel. Reproducible for a given ``seed``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from ..errors import InputError
from .priors import BoxPrior


@dataclass
class StageRecord:
    """One tempering stage: exponent reached (β, or in the bridge the fraction of the way from the coarse to the
    fine likelihood), evidence increment, acceptance and proposal scale, cumulative evaluations (all, coarse,
    fine), the wall time since sampling started and the phase ("fine", or "coarse" / "bridge" in a multi-fidelity
    run)."""

    beta: float
    log_evidence_increment: float
    acceptance: float
    proposal_scale: float
    evaluations: int
    phase: str = "fine"
    coarse_evaluations: int = 0
    fine_evaluations: int = 0
    seconds: float = 0.0


@dataclass
class TMCMCResult:
    """Posterior samples (transformed space and natural units), their log likelihoods, evidence and history."""

    prior: BoxPrior
    samples: np.ndarray          # (n, dim) transformed space, equally weighted draws from the posterior
    log_likelihood: np.ndarray   # (n,)
    log_evidence: float
    stages: list = field(default_factory=list)
    evaluations: int = 0
    evaluations_by_grid: dict = field(default_factory=dict)  # {"coarse": n, "fine": n}

    @property
    def natural(self) -> np.ndarray:
        """(n, dim) samples in natural units."""
        return self.prior.to_natural(self.samples)

    @property
    def log_posterior(self) -> np.ndarray:
        """Unnormalised log posterior of each sample (log likelihood + log prior in the sampled space)."""
        return self.log_likelihood + self.prior.log_density(self.samples)

    @property
    def map_index(self) -> int:
        return int(np.argmax(self.log_posterior))

    def summary(self) -> dict:
        """Per parameter (natural units): MAP, mean, median, 2.5 % and 97.5 % quantiles."""
        x = self.natural
        out = {}
        for d, name in enumerate(self.prior.names):
            lo, med, hi = np.percentile(x[:, d], [2.5, 50, 97.5])
            out[name] = {"map": float(x[self.map_index, d]), "mean": float(x[:, d].mean()), "median": float(med),
                         "ci95": [float(lo), float(hi)]}
        return out


def _next_beta(log_l: np.ndarray, beta: float, target_cov: float, end: float = 1.0) -> float:
    """Largest step in β (bisection in [beta, end]) whose weights have coefficient of variation <= target_cov."""

    def cov(next_beta):
        logw = (next_beta - beta) * log_l
        w = np.exp(logw - logw.max())
        return w.std() / w.mean()

    if cov(end) <= target_cov:
        return end
    lo, hi = beta, end
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cov(mid) > target_cov:
            hi = mid
        else:
            lo = mid
    return max(lo, beta + 1e-12)


def _metropolis(fine, coarse, prior, z, log_l, exponents, chol, steps, rng, delayed_acceptance=False):
    """``steps`` Metropolis sweeps over the population targeting prior * L_c^a * L_f^b.

    ``log_l`` is (n, 2): the coarse and fine log likelihoods of each point (column 0 unused without a coarse
    model), ``exponents`` = (a, b); each grid is simulated only where the target (a > 0, b > 0) or the screen needs
    it. With ``delayed_acceptance`` (Christen & Fox 2005) and b > 0, a proposal is first accepted or rejected on the
    coarse target prior * L_c^(a + b), and only the survivors are simulated on the fine grid and corrected by
    (L_f / L_c)^b: still exact for the fine target, but it mixes only where the coarse likelihood's mode is close
    to the fine one's. Returns the moved population, its log likelihoods, the accepted moves and the coarse and
    fine evaluations.
    """
    n = len(z)
    a, b = exponents
    screened = coarse is not None and delayed_acceptance and b > 0.0
    log_prior = prior.log_density(z)
    accepted, used = 0, np.zeros(2, dtype=int)
    for _ in range(steps):
        proposal = z + rng.standard_normal(z.shape) @ chol.T
        proposal_prior = prior.log_density(proposal)
        proposal_l = np.full((n, 2), -np.inf)
        passed = np.isfinite(proposal_prior)
        if a > 0.0 or screened:
            proposal_l[passed, 0] = _evaluate(coarse, proposal[passed])
            used[0] += int(passed.sum())
            passed &= np.isfinite(proposal_l[:, 0])
        if screened:
            with np.errstate(invalid="ignore"):
                screen = (a + b) * (proposal_l[:, 0] - log_l[:, 0]) + proposal_prior - log_prior
            passed &= np.log(rng.uniform(size=n)) < np.where(passed, screen, -np.inf)
        if b > 0.0 and passed.any():
            proposal_l[passed, 1] = _evaluate(fine, proposal[passed])
            used[1] += int(passed.sum())
            passed &= np.isfinite(proposal_l[:, 1])
        log_ratio = np.full(n, -np.inf)
        rows = passed  # proposals that reached the final test
        with np.errstate(invalid="ignore"):
            if screened:
                log_ratio[rows] = b * ((proposal_l[rows, 1] - proposal_l[rows, 0]) - (log_l[rows, 1] - log_l[rows, 0]))
            else:
                log_ratio[rows] = proposal_prior[rows] - log_prior[rows]
                for column, exponent in ((0, a), (1, b)):
                    if exponent > 0.0:
                        log_ratio[rows] += exponent * (proposal_l[rows, column] - log_l[rows, column])
        accept = passed & (np.log(rng.uniform(size=n)) < log_ratio)
        z, log_l, log_prior = z.copy(), log_l.copy(), log_prior.copy()
        z[accept], log_l[accept], log_prior[accept] = proposal[accept], proposal_l[accept], proposal_prior[accept]
        accepted += int(accept.sum())
    return z, log_l, accepted, used


def _evaluate(log_likelihood, z: np.ndarray) -> np.ndarray:
    """Log likelihoods of a batch (NaN read as -inf); an empty batch costs nothing."""
    if len(z) == 0:
        return np.zeros(0)
    values = np.asarray(log_likelihood(z), dtype=np.float64)
    return np.where(np.isnan(values), -np.inf, values)


@dataclass
class _Phase:
    """A stretch of the tempering path on which the exponents (a, b) of L_c^a L_f^b are linear in t in
    [t0, t1]: (a, b) = start + t * slope. ``name`` is what the progress and the stage records show."""

    name: str
    t0: float
    t1: float
    start: tuple
    slope: tuple

    def exponents(self, t: float) -> tuple:
        return (self.start[0] + t * self.slope[0], self.start[1] + t * self.slope[1])

    def increment(self, log_l: np.ndarray) -> np.ndarray:
        """Per point, d(log weight)/dt: the log likelihoods weighted by the slope (-inf stays -inf)."""
        out = np.zeros(len(log_l))
        for column, slope in enumerate(self.slope):
            if slope != 0.0:
                out = out + slope * log_l[:, column]
        return out


def _phases(coarse: bool, switch_beta: float) -> list:
    """Single fidelity: beta from 0 to 1 on the fine likelihood. Multi-fidelity: beta from 0 to ``switch_beta`` on
    the coarse likelihood, a bridge at fixed beta from the coarse to the fine likelihood (tempered like a stage, so
    the importance weights never degenerate, however biased the coarse grid), then beta on to 1 on the fine one."""
    if not coarse:
        return [_Phase("fine", 0.0, 1.0, (0.0, 0.0), (0.0, 1.0))]
    s = switch_beta
    return [_Phase("coarse", 0.0, s, (0.0, 0.0), (1.0, 0.0)), _Phase("bridge", 0.0, 1.0, (s, 0.0), (-s, s)),
            _Phase("fine", s, 1.0, (0.0, 0.0), (0.0, 1.0))]


def sample(log_likelihood, prior: BoxPrior, *, n_samples: int = 2048, seed: int = 0, target_cov: float = 1.0,
           mcmc_steps: int = 1, final_steps: int = 2, proposal_scale: float = 0.2, max_stages: int = 200,
           coarse_log_likelihood=None, switch_beta: float = 1e-3, delayed_acceptance: bool = False,
           progress=None) -> TMCMCResult:
    """Sample the posterior prior(θ) L(θ) with Transitional MCMC, optionally multi-fidelity.

    Parameters
    ----------
    log_likelihood : callable
        ``log_likelihood(z) -> (m,)`` for a batch ``z`` of shape (m, dim) in the prior's transformed space; may
        return -inf. Batches go through it whole, so it is the place to parallelise.
    prior : BoxPrior
    n_samples : int
        Population size (2048 by default, as in the thesis).
    seed : int
        Random seed; the same seed and likelihood give the same result.
    target_cov : float
        Coefficient of variation of the importance weights that fixes each tempering step (1.0 is standard).
    mcmc_steps : int
        Metropolis steps per point and stage.
    final_steps : int
        Extra Metropolis steps per point at β = 1.
    proposal_scale : float
        Initial scale of the proposal covariance relative to the population covariance; adapted each stage.
    max_stages : int
        Give up (InputError) if β has not reached 1 after this many stages.
    coarse_log_likelihood : callable, optional
        A cheaper approximation of ``log_likelihood`` (e.g. the same model on a coarser grid), same signature.
        Given, the stages up to ``switch_beta`` run on it alone, then a bridge carries the population over to the
        fine likelihood and the later stages run on that. The result is a sample of the fine posterior however
        biased the coarse likelihood is; points where the coarse likelihood is -inf are never visited.
    switch_beta : float
        β at which the coarse stages hand over to the fine likelihood.
    delayed_acceptance : bool
        Screen the fine stages' moves on the coarse likelihood first (:func:`_metropolis`): fewer fine runs, but
        on a coarse grid whose posterior lies many posterior widths from the fine one the moves stall and the
        population degenerates (measured: docs/methods/tmcmc.md), so off by default.
    progress : callable(beta: float, stage: int, phase: str) or None
        Called after each stage (``phase``: "coarse", "bridge" or "fine"; beta is the tempering exponent of the
        phase's likelihood); may raise :class:`~TumorPersonalizationLib.errors.Cancelled`.
    """
    if n_samples < 2 * prior.dim:
        raise InputError(f"n_samples must be at least twice the number of parameters ({2 * prior.dim})")
    if not 0.0 < switch_beta < 1.0:
        raise InputError(f"switch_beta must lie in (0, 1), not {switch_beta}")
    coarse = coarse_log_likelihood
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    z = prior.sample(n_samples, rng)
    log_l = np.full((n_samples, 2), -np.inf)
    log_l[:, 0 if coarse is not None else 1] = _evaluate(coarse if coarse is not None else log_likelihood, z)
    evaluations = np.array([n_samples, 0] if coarse is not None else [0, n_samples])
    if not np.any(np.isfinite(log_l).any(axis=1)):
        raise InputError("the likelihood is -inf for every prior sample; check the data and the prior ranges")
    log_evidence, scale = 0.0, proposal_scale
    stages = []
    for phase in _phases(coarse is not None, switch_beta):
        if phase.name == "bridge":  # the population's fine likelihoods, once
            log_l[:, 1] = _evaluate(log_likelihood, z)
            evaluations[1] += n_samples
        t = phase.t0
        while t < phase.t1:
            if len(stages) >= max_stages:
                raise InputError(f"TMCMC did not reach the posterior in {max_stages} stages (beta = {t:.3g})")
            g = phase.increment(log_l)
            finite = np.isfinite(g)
            if not finite.any():
                raise InputError("the fine likelihood is -inf for every sample at the switch from the coarse grid")
            next_t = _next_beta(np.where(finite, g, g[finite].min() - 1e6), t, target_cov, phase.t1)
            logw = np.where(finite, (next_t - t) * np.where(finite, g, 0.0), -np.inf)
            increment = float(logsumexp(logw) - np.log(n_samples))
            log_evidence += increment
            weights = np.exp(logw - logsumexp(logw))
            mean = weights @ z
            centred = z - mean
            covariance = (weights[:, None] * centred).T @ centred
            covariance += 1e-12 * np.eye(prior.dim) * max(1.0, float(np.trace(covariance)))
            chosen = rng.choice(n_samples, size=n_samples, p=weights)
            z, log_l = z[chosen].copy(), log_l[chosen].copy()
            chol = np.linalg.cholesky(scale ** 2 * covariance)
            last = phase.name == "fine" and next_t >= 1.0
            steps = mcmc_steps + (final_steps if last else 0)
            z, log_l, accepted, used = _metropolis(log_likelihood, coarse, prior, z, log_l, phase.exponents(next_t),
                                                   chol, steps, rng, delayed_acceptance)
            evaluations += used
            acceptance = accepted / (steps * n_samples)
            stages.append(StageRecord(next_t, increment, acceptance, scale, int(evaluations.sum()), phase.name,
                                      int(evaluations[0]), int(evaluations[1]), time.perf_counter() - started))
            # Betz et al. (2016): grow the proposal when many moves are accepted, shrink it when few are.
            scale = float(np.clip(scale * np.exp(2.0 * (acceptance - 0.23)), 0.02, 2.0))
            t = next_t
            if progress is not None:
                progress(t if phase.name != "bridge" else switch_beta, len(stages), phase.name)
    return TMCMCResult(prior, z, log_l[:, 1], log_evidence, stages, int(evaluations.sum()),
                       {"coarse": int(evaluations[0]), "fine": int(evaluations[1])})
