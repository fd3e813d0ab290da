"""Train the amortised first round: one NPE round on prior simulations from many brains (:mod:`.dataset`), saved
as ``Resources/NPE/npe.pt`` for :func:`TumorPersonalizationLib.npe.estimator.load_weights`.

Training is sbi's single-round NPE (maximum likelihood of the MDN) with the config's ``training`` section,
overridden by ``amortised_training`` (more epochs, more patience: the data set is larger than a round's). The
validation split then gives the held-out loss and the coverage of central credible intervals (a quick
calibration check; the full simulation-based calibration is ``bench/npe.py``'s).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ...errors import InputError
from .. import estimator as est
from ..parameters import GROWTH_NAMES
from .dataset import global_box, load_split


def amortised_config(config: dict) -> dict:
    """The config with ``amortised_training`` laid over ``training``."""
    return {**config, "training": {**config["training"], **config.get("amortised_training", {})}}


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


def train_amortised(config: dict, data_dir, out_path, *, train_limit: int | None = None, val_cases: int = 100,
                    log=print) -> dict:
    """Train on ``data_dir``'s train split, check on its val split, write the weights; returns the training log.

    Parameters
    ----------
    config : dict
        NPE config (its dataset, observation, embedding, mdn and training sections).
    data_dir : path
        Shards from ``Scripts/npe_make_dataset.py``.
    out_path : path
        The weights file to write.
    train_limit : int, optional
        Use only the first cases (trials).
    val_cases : int
        Validation cases for the coverage check (0: skip it).
    log : callable(str)
    """
    theta, x = load_split(data_dir, "train", train_limit)
    low, high = global_box(config)
    if np.any(theta < low - 1e-6) or np.any(theta > high + 1e-6):
        raise InputError(f"NPE data {data_dir}: parameters outside the config's ranges (made with another config?)")
    cfg = amortised_config(config)
    device = cfg["training"].get("device", "cpu")
    log(f"training on {len(theta)} cases, observations {x.shape[1:]}")
    started = time.perf_counter()
    trainer = est.make_trainer(est.box_prior(low, high, device), cfg, in_channels=x.shape[1], device=device)
    estimator, summary = est.append_and_train(trainer, theta, x.astype(np.float32), None, cfg)
    estimator = estimator.to("cpu")  # run time, and the check below, are on the CPU
    prior = est.box_prior(low, high)
    seconds = time.perf_counter() - started
    record = {"cases": int(len(theta)), "epochs": summary["epochs"],
              "best_validation_loss": summary["best_validation_loss"], "training_s": seconds,
              "training_loss": [float(v) for v in trainer._summary["training_loss"]],
              "validation_loss": [float(v) for v in trainer._summary["validation_loss"]]}
    log(f"trained {summary['epochs']} epochs in {seconds:.0f} s; best validation loss "
        f"{summary['best_validation_loss']:.3f}")
    if val_cases:
        try:
            val_theta, val_x = load_split(data_dir, "val", val_cases)
        except InputError:
            val_theta = None
        if val_theta is not None:
            found = coverage(lambda obs: est.direct_posterior(estimator, prior, obs), val_theta,
                             val_x.astype(np.float32), samples=300)
            found.pop("ranks")
            record["val_coverage"] = found
            log(f"val coverage: {json.dumps(found)}")
    est.save_weights(out_path, estimator, config, GROWTH_NAMES, x.shape[1], low, high,
                     extra={"training_log": json.dumps(record)})
    log(f"wrote {out_path}")
    return record


def write_log(record: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(record, indent=1))
    return path
