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

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from ..errors import InputError
from .priors import BoxPrior


@dataclass
class StageRecord:
    """One tempering stage: exponent reached, evidence increment, acceptance and proposal scale, evaluations."""

    beta: float
    log_evidence_increment: float
    acceptance: float
    proposal_scale: float
    evaluations: int


@dataclass
class TMCMCResult:
    """Posterior samples (transformed space and natural units), their log likelihoods, evidence and history."""

    prior: BoxPrior
    samples: np.ndarray          # (n, dim) transformed space, equally weighted draws from the posterior
    log_likelihood: np.ndarray   # (n,)
    log_evidence: float
    stages: list = field(default_factory=list)
    evaluations: int = 0

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


def _next_beta(log_l: np.ndarray, beta: float, target_cov: float) -> float:
    """Largest step in β (bisection in [beta, 1]) whose weights have coefficient of variation <= target_cov."""

    def cov(next_beta):
        logw = (next_beta - beta) * log_l
        w = np.exp(logw - logw.max())
        return w.std() / w.mean()

    if cov(1.0) <= target_cov:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cov(mid) > target_cov:
            hi = mid
        else:
            lo = mid
    return max(lo, beta + 1e-12)


def _metropolis(log_likelihood, prior, z, log_l, beta, chol, steps, rng):
    """``steps`` Metropolis sweeps over the population targeting prior * L^beta; returns the moved population,
    its log likelihoods, the number of accepted moves and of likelihood evaluations."""
    n = len(z)
    log_prior = prior.log_density(z)
    accepted = used = 0
    for _ in range(steps):
        proposal = z + rng.standard_normal(z.shape) @ chol.T
        proposal_prior = prior.log_density(proposal)
        inside = np.isfinite(proposal_prior)
        proposal_l = np.full(n, -np.inf)
        if inside.any():
            proposal_l[inside] = np.asarray(log_likelihood(proposal[inside]), dtype=np.float64)
            used += int(inside.sum())
        proposal_l = np.where(np.isnan(proposal_l), -np.inf, proposal_l)
        with np.errstate(invalid="ignore"):
            log_ratio = beta * (proposal_l - log_l) + proposal_prior - log_prior
        log_ratio = np.where(np.isfinite(proposal_l), log_ratio, -np.inf)
        accept = np.log(rng.uniform(size=n)) < log_ratio
        z, log_l, log_prior = z.copy(), log_l.copy(), log_prior.copy()
        z[accept], log_l[accept], log_prior[accept] = proposal[accept], proposal_l[accept], proposal_prior[accept]
        accepted += int(accept.sum())
    return z, log_l, accepted, used


def sample(log_likelihood, prior: BoxPrior, *, n_samples: int = 2048, seed: int = 0, target_cov: float = 1.0,
           mcmc_steps: int = 1, final_steps: int = 2, proposal_scale: float = 0.2, max_stages: int = 200,
           progress=None) -> TMCMCResult:
    """Sample the posterior prior(θ) L(θ) with Transitional MCMC.

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
    progress : callable(beta: float, stage: int) or None
        Called after each stage; may raise :class:`~TumorPersonalizationLib.errors.Cancelled`.
    """
    if n_samples < 2 * prior.dim:
        raise InputError(f"n_samples must be at least twice the number of parameters ({2 * prior.dim})")
    rng = np.random.default_rng(seed)
    z = prior.sample(n_samples, rng)
    log_l = np.asarray(log_likelihood(z), dtype=np.float64)
    evaluations = n_samples
    if not np.any(np.isfinite(log_l)):
        raise InputError("the likelihood is -inf for every prior sample; check the data and the prior ranges")
    log_l = np.where(np.isnan(log_l), -np.inf, log_l)
    beta, log_evidence, scale = 0.0, 0.0, proposal_scale
    stages = []
    while beta < 1.0:
        if len(stages) >= max_stages:
            raise InputError(f"TMCMC did not reach the posterior in {max_stages} stages (beta = {beta:.3g})")
        finite = np.isfinite(log_l)
        next_beta = _next_beta(np.where(finite, log_l, log_l[finite].min() - 1e6), beta, target_cov)
        logw = np.where(finite, (next_beta - beta) * np.where(finite, log_l, 0.0), -np.inf)
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
        steps = mcmc_steps + (final_steps if next_beta >= 1.0 else 0)
        z, log_l, accepted, used = _metropolis(log_likelihood, prior, z, log_l, next_beta, chol, steps, rng)
        evaluations += used
        acceptance = accepted / (steps * n_samples)
        stages.append(StageRecord(next_beta, increment, acceptance, scale, evaluations))
        # Betz et al. (2016): grow the proposal when many moves are accepted, shrink it when few are.
        scale = float(np.clip(scale * np.exp(2.0 * (acceptance - 0.23)), 0.02, 2.0))
        beta = next_beta
        if progress is not None:
            progress(beta, len(stages))
    return TMCMCResult(prior, z, log_l, log_evidence, stages, evaluations)
