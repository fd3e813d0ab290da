"""Train the amortised first round: maximum likelihood of the MDN on prior simulations from many brains
(:mod:`.dataset`), saved as ``Resources/NPE/npe.pt`` for :func:`TumorPersonalizationLib.npe.estimator.load_weights`.

This is what sbi's single-round NPE does (the same network from :func:`..estimator.density_estimator_builder`,
the same loss ``estimator.loss(theta, x)``, Adam, gradient norm clipped at 5, early stopping on a held-out
fraction), written out here so that a run of an hour or two is checkpointed after every epoch and resumes where
it stopped (``max_minutes``, Ctrl-C, a stopped session). The config's ``training`` section is overridden by
``amortised_training`` (more epochs, more patience: the data set is larger than a round's). The validation split
then gives the coverage of central credible intervals (a quick calibration check; the full simulation-based
calibration is ``bench/npe.py``'s).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...files import atomic_path
from .. import estimator as est
from ..parameters import GROWTH_NAMES
from .dataset import global_box, load_split

CLIP_MAX_NORM = 5.0  # sbi's default for NPE training


def amortised_config(config: dict) -> dict:
    """The config with ``amortised_training`` laid over ``training``."""
    return {**config, "training": {**config["training"], **config.get("amortised_training", {})}}


def checkpoint_path(out_path) -> Path:
    """Where a training run towards ``out_path`` keeps its state between calls (beside the weights)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".checkpoint.pt")


def coverage(posterior_of, theta: np.ndarray, x: np.ndarray, levels=(0.5, 0.9), samples: int = 500,
             seed: int = 0) -> dict:
    """Fraction of cases whose true parameter lies in the posterior's central ``level`` interval, per parameter.

    Parameters
    ----------
    posterior_of : callable(x (C, N, N, N)) -> posterior with a default observation
    theta : (n, dim) true scaled parameters
    x : (n, C, N, N, N) observations
    levels : credible levels
    samples : posterior draws per case

    Returns
    -------
    {"level": {name: fraction}} plus "ranks": (n, dim) rank of the truth among the draws (for SBC histograms)
    """
    ranks, inside = [], {level: [] for level in levels}
    for n in range(len(theta)):
        draws = est.sample(posterior_of(x[n]), samples, seed + n)
        ranks.append((draws < theta[n]).sum(axis=0))
        for level in levels:
            lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
            inside[level].append((theta[n] >= lo) & (theta[n] <= hi))
    names = GROWTH_NAMES[:theta.shape[1]]
    out = {str(level): dict(zip(names, np.mean(inside[level], axis=0).tolist())) for level in levels}
    out["ranks"] = np.asarray(ranks)
    return out


class _Run:
    """One amortised training run: network, optimiser, the epochs done, early-stopping state, its checkpoint."""

    def __init__(self, cfg: dict, theta, x, checkpoint: Path):
        import torch

        training = cfg["training"]
        self.cfg, self.checkpoint = cfg, checkpoint
        torch.manual_seed(int(training["seed"]))
        order = np.random.default_rng(int(training["seed"])).permutation(len(theta))
        n_val = max(1, int(round(float(training["validation_fraction"]) * len(theta))))
        self.val_index, self.train_index = order[:n_val], order[n_val:]
        with est._quiet():
            self.net = est.density_estimator_builder(cfg, x.shape[1])(
                torch.as_tensor(theta[self.train_index]), torch.as_tensor(x[self.train_index[:2]], dtype=torch.float32))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(training["learning_rate"]))
        # A checkpoint continues only the run it came from: same config, same training cases.
        self.key = hashlib.sha256(json.dumps([cfg, len(theta), theta[:5].tolist()], sort_keys=True).encode()
                                  ).hexdigest()
        self.epoch, self.seconds, self.since_best = 0, 0.0, 0
        self.best_loss, self.best_state = float("inf"), None
        self.training_loss, self.validation_loss = [], []

    def resume(self) -> bool:
        import torch

        if not self.checkpoint.exists():
            return False
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        if state.get("key") != self.key:
            raise InputError(f"{self.checkpoint} belongs to another config or data set; delete it to start over")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_state = state["best_state"]
        for name in ("epoch", "seconds", "since_best", "best_loss", "training_loss", "validation_loss"):
            setattr(self, name, state[name])
        return True

    def save(self) -> None:
        import torch

        with atomic_path(self.checkpoint, ".pt") as tmp:
            torch.save({"key": self.key, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "best_state": self.best_state, "epoch": self.epoch, "seconds": self.seconds,
                        "since_best": self.since_best, "best_loss": self.best_loss,
                        "training_loss": self.training_loss, "validation_loss": self.validation_loss}, tmp)

    @property
    def finished(self) -> bool:
        training = self.cfg["training"]
        return self.epoch >= int(training["max_epochs"]) or self.since_best >= int(training["stop_after_epochs"])

    def _mean_loss(self, theta, x, index, train: bool) -> float:
        import torch

        batch = int(self.cfg["training"]["batch_size"])
        total = 0.0
        self.net.train(train)
        for start in range(0, len(index), batch):
            rows = np.sort(index[start:start + batch])
            theta_b = torch.as_tensor(theta[rows], dtype=torch.float32)
            x_b = torch.as_tensor(x[rows], dtype=torch.float32)
            with torch.set_grad_enabled(train):
                loss = self.net.loss(theta_b, x_b).mean()
            if train:
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), CLIP_MAX_NORM)
                self.optimizer.step()
            total += loss.item() * len(rows)
        return total / len(index)

    def train_epoch(self, theta, x) -> None:
        started = time.perf_counter()
        shuffled = np.random.default_rng(int(self.cfg["training"]["seed"]) + 1 + self.epoch).permutation(
            self.train_index)
        self.training_loss.append(self._mean_loss(theta, x, shuffled, train=True))
        self.validation_loss.append(self._mean_loss(theta, x, self.val_index, train=False))
        if self.validation_loss[-1] < self.best_loss:
            self.best_loss, self.since_best = self.validation_loss[-1], 0
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        else:
            self.since_best += 1
        self.epoch += 1
        self.seconds += time.perf_counter() - started
        self.save()


def train_amortised(config: dict, data_dir, out_path, *, train_limit: int | None = None, val_cases: int = 100,
                    max_minutes: float | None = None, log=print, progress=None) -> dict | None:
    """Train on ``data_dir``'s train split, check on its val split, write the weights; returns the training log,
    or None when ``max_minutes`` ran out first (call again to continue from the checkpoint).

    Parameters
    ----------
    config : dict
        NPE config (its dataset, observation, embedding, mdn and training sections).
    data_dir : path
        Shards from ``Scripts/npe_make_dataset.py``.
    out_path : path
        The weights file to write; the run's state is kept in :func:`checkpoint_path` until the weights exist.
    train_limit : int, optional
        Use only the first cases (trials).
    val_cases : int
        Validation cases for the coverage check (0: skip it).
    max_minutes : float, optional
        Stop after the epoch during which this much wall time has passed in this call (0: after one epoch).
    log : callable(str)
    progress : callable(fraction of the most epochs), optional
    """
    theta, x = load_split(data_dir, "train", train_limit)
    low, high = global_box(config)
    if np.any(theta < low - 1e-6) or np.any(theta > high + 1e-6):
        raise InputError(f"NPE data {data_dir}: parameters outside the config's ranges (made with another config?)")
    cfg = amortised_config(config)
    theta = theta.astype(np.float32)
    run = _Run(cfg, theta, x, checkpoint_path(out_path))
    if run.resume():
        log(f"resumed after epoch {run.epoch} ({run.seconds:.0f} s trained, best validation loss "
            f"{run.best_loss:.3f})")
    log(f"training on {len(run.train_index)} cases (+{len(run.val_index)} for early stopping), observations "
        f"{x.shape[1:]}")
    started = time.perf_counter()
    while not run.finished:
        run.train_epoch(theta, x)
        if progress is not None:
            progress(run.epoch / int(cfg["training"]["max_epochs"]))
        log(f"epoch {run.epoch}: training loss {run.training_loss[-1]:.3f}, validation loss "
            f"{run.validation_loss[-1]:.3f} ({run.seconds:.0f} s)")
        if not run.finished and max_minutes is not None and time.perf_counter() - started > 60.0 * max_minutes:
            log(f"stopped after {max_minutes} min at epoch {run.epoch}; run again to continue")
            return None
    estimator = run.net
    estimator.load_state_dict(run.best_state)
    estimator.eval()
    record = {"cases": int(len(theta)), "epochs": run.epoch, "best_validation_loss": run.best_loss,
              "training_s": run.seconds, "training_loss": run.training_loss, "validation_loss": run.validation_loss}
    log(f"trained {run.epoch} epochs in {run.seconds:.0f} s; best validation loss {run.best_loss:.3f}")
    if val_cases:
        try:
            val_theta, val_x = load_split(data_dir, "val", val_cases)
        except InputError:
            val_theta = None
        if val_theta is not None:
            prior = est.box_prior(low, high)
            found = coverage(lambda obs: est.direct_posterior(estimator, prior, obs), val_theta,
                             val_x.astype(np.float32), samples=300)
            found.pop("ranks")
            record["val_coverage"] = found
            log(f"val coverage: {json.dumps(found)}")
    est.save_weights(out_path, estimator, config, GROWTH_NAMES, x.shape[1], low, high,
                     extra={"training_log": json.dumps(record)})
    run.checkpoint.unlink(missing_ok=True)
    log(f"wrote {out_path}")
    return record


def write_log(record: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(record, indent=1))
    return path
