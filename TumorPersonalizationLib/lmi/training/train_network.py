"""Training of the inverse network: AdamW on the mean squared error of the scaled targets, resumable.

One function, :func:`train`, serves the CPU config (minutes per epoch on 2 cores) and a full-size config on a GPU.
State is checkpointed (model, optimiser, schedule position, step within the epoch) every ``checkpoint_every`` steps
and at each epoch's end; a new call with the same folder continues where the last one stopped, with the same batch
order (each epoch's permutation comes from the seed and the epoch number).

Schedule: cosine decay from ``learning_rate`` to ``final_learning_rate`` over all steps. The thesis used
6e-5 with a slow exponential decay over many more epochs on 80k cases; a short CPU run needs a larger start.

Warm start: with ``training.init_weights`` (a weights file, relative to ``Resources/``) a new run starts from that
trained network instead of a random one; it must have the same architecture, grid and input crop. The
mass-effect config starts from the Fisher-Kolmogorov network: the lesions look alike, so a few epochs on the new
data adapt it.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ...errors import Cancelled, InputError
from ...files import atomic_path
from ...resources import resources_dir
from ..config import target_scaling
from ..inputs import assemble, crop_labels
from ..labels import relative_targets
from ..network import WEIGHTS_NAME, InverseNet, check_network_config, load_network
from .dataset import check_manifest, load_split, load_tissue

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "training_log.jsonl"


class _Batches:
    """Cases as lesion-centred label crops and scaled targets; assembles the network input batch by batch."""

    def __init__(self, data: dict, tissue_wm_gm: np.ndarray, config: dict, device: torch.device):
        self.crops, self.origins, self.centres = crop_labels(data["labels"], int(config["input"]["crop_size"]))
        scaling = target_scaling(config)
        self.targets = torch.from_numpy(scaling.scale(relative_targets(data["targets"], self.centres))).to(device)
        self.tissue = tissue_wm_gm
        self.device = device

    def __len__(self):
        return len(self.targets)

    def get(self, index: np.ndarray):
        x = assemble(self.crops[index], self.origins[index], self.tissue)
        return torch.from_numpy(x).to(self.device), self.targets[torch.as_tensor(index, device=self.device)]


def _learning_rate(cfg: dict, step: int, total: int) -> float:
    lr0, lr1 = cfg["learning_rate"], cfg["final_learning_rate"]
    return lr1 + 0.5 * (lr0 - lr1) * (1.0 + math.cos(math.pi * min(step / max(total, 1), 1.0)))


def _save(obj, path: Path) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


def evaluate(model: InverseNet, batches: _Batches, batch_size: int) -> tuple[float, np.ndarray]:
    """Mean squared error of the scaled targets and the per-target mean absolute error (scaled units)."""
    model.eval()
    errors = []
    with torch.no_grad():
        for start in range(0, len(batches), batch_size):
            index = np.arange(start, min(start + batch_size, len(batches)))
            x, y = batches.get(index)
            errors.append((model(x) - y).float().cpu().numpy())
    model.train()
    e = np.concatenate(errors)
    return float(np.mean(e ** 2)), np.mean(np.abs(e), axis=0)


def _datasets(config: dict, data_dir, train_limit: int | None, device: torch.device) -> tuple[_Batches, _Batches]:
    """The training and validation batches; exactly the config's ``dataset.cases.train`` training cases (or the
    first ``train_limit``): extra shards must not change the run silently."""
    check_manifest(data_dir, config)
    wanted = int(config["dataset"]["cases"]["train"])
    train_data = load_split(data_dir, "train", limit=wanted if train_limit is None else min(train_limit, wanted))
    if train_limit is None and len(train_data["targets"]) < wanted:
        raise InputError(f"{data_dir} holds {len(train_data['targets'])} training cases, the config asks for "
                         f"{wanted}: make the missing shards with Scripts/lmi_make_dataset.py")
    val_data = load_split(data_dir, "val")
    tissue = load_tissue(data_dir)
    return tuple(_Batches(d, tissue, config, device) for d in (train_data, val_data))


def _initial_state(config: dict) -> dict:
    """The state dict of ``training.init_weights``, checked to fit ``config``'s network, grid and crop."""
    path = resources_dir() / config["training"]["init_weights"]
    model, start_config = load_network(path)
    for section in ("network", "grid", "input", "targets"):
        if start_config[section] != config[section]:
            raise InputError(f"training.init_weights {path}: its {section} section differs from this config's")
    return model.state_dict()


class _Run:
    """One training run's state: the model, the optimiser, the step reached and the checkpoint in ``out_dir``."""

    def __init__(self, config: dict, n_train: int, out_dir: Path, device: torch.device):
        self.config, self.cfg, self.out_dir = config, config["training"], out_dir
        self.batch_size, self.epochs = int(self.cfg["batch_size"]), int(self.cfg["epochs"])
        self.steps_per_epoch = n_train // self.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{n_train} training cases are fewer than one batch of {self.batch_size}")
        self.total_steps = self.steps_per_epoch * self.epochs
        self.model = InverseNet.from_config(config).to(device)
        if config["training"].get("init_weights"):
            self.model.load_state_dict(_initial_state(config))
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=self.cfg["learning_rate"],
                                           betas=tuple(self.cfg["adam_betas"]), weight_decay=self.cfg["weight_decay"])
        self.step, self.elapsed_before, self.val_mse = 0, 0.0, float("nan")
        # A checkpoint continues only the run it came from: same config, same training set.
        self.run_id = hashlib.sha256(json.dumps([config, n_train], sort_keys=True).encode()).hexdigest()
        self.checkpoint = out_dir / CHECKPOINT_NAME
        self.started = time.perf_counter()

    def resume(self, device: torch.device) -> bool:
        """Load the checkpoint if there is one; True when it holds a finished run whose weights exist."""
        if not self.checkpoint.exists():
            return False
        state = torch.load(self.checkpoint, map_location=device, weights_only=True)
        if state.get("run_id") != self.run_id:
            raise InputError(f"{self.checkpoint} belongs to another config or training set; use a new --out folder")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.step, self.elapsed_before = int(state["step"]), float(state["seconds"])
        self.val_mse = float(state.get("val_mse", float("nan")))
        return self.step >= self.total_steps and (self.out_dir / WEIGHTS_NAME).exists()

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def save_checkpoint(self) -> None:
        _save({"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(), "step": self.step,
               "seconds": self.elapsed_before + self.seconds(), "run_id": self.run_id, "val_mse": self.val_mse},
              self.checkpoint)

    def result(self, finished: bool, epoch: int, seconds: float | None = None) -> dict:
        return {"finished": finished, "epoch": epoch, "step": self.step, "val_mse": self.val_mse,
                "seconds": self.seconds() if seconds is None else seconds}

    def train_epoch(self, train_set: _Batches, checkpoint_every: int, max_minutes, progress) -> tuple[float, bool]:
        """Steps to the end of the current epoch (from where it stands); (mean training loss, out of time)."""
        epoch, position = divmod(self.step, self.steps_per_epoch)
        order = np.random.default_rng([int(self.cfg["seed"]), epoch]).permutation(len(train_set))
        running, count = 0.0, 0
        for position in range(position, self.steps_per_epoch):
            for group in self.optimiser.param_groups:
                group["lr"] = _learning_rate(self.cfg, self.step, self.total_steps)
            x, y = train_set.get(order[position * self.batch_size:(position + 1) * self.batch_size])
            loss = torch.mean((self.model(x) - y) ** 2)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            self.step += 1
            running, count = running + float(loss.detach()), count + 1
            if self.step % checkpoint_every == 0:
                self.save_checkpoint()
            out_of_time = max_minutes is not None and self.seconds() > 60.0 * max_minutes
            if progress is not None:
                progress(self.step / self.total_steps)
            if out_of_time:
                return running / max(count, 1), True
        return running / max(count, 1), False

    def end_epoch(self, epoch: int, train_mse: float, val_set: _Batches, device: torch.device, log) -> None:
        """Validate, append the epoch's line to the log and checkpoint."""
        self.val_mse, val_mae = evaluate(self.model, val_set, self.batch_size)
        entry = {"epoch": epoch + 1, "step": self.step, "train_mse": train_mse, "val_mse": self.val_mse,
                 "val_mae_scaled": dict(zip(target_scaling(self.config).NAMES, np.round(val_mae, 5).tolist())),
                 "learning_rate": _learning_rate(self.cfg, self.step, self.total_steps),
                 "seconds": round(self.elapsed_before + self.seconds(), 1), "device": str(device)}
        with open(self.out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(entry) + "\n")
        log(json.dumps(entry))
        self.save_checkpoint()


def train(config: dict, data_dir, out_dir, *, device: str = "cpu", max_minutes: float | None = None,
          train_limit: int | None = None, checkpoint_every: int = 100, progress=None, log=print) -> dict:
    """Train (or continue training) the inverse network described by ``config``.

    Parameters
    ----------
    config : dict
        The LMI config (``network``, ``training``, ``targets`` sections).
    data_dir : path
        Dataset folder with ``train_*.npz`` and ``val_*.npz`` shards and ``tissue.npz``.
    out_dir : path
        Receives ``checkpoint.pt``, ``training_log.jsonl`` and, once every epoch is done, ``inverse_net.pt``
        (state dict, config and a summary; load with :func:`..network.load_network`).
    device : str
        "cpu" or "cuda".
    max_minutes : float, optional
        Stop (after checkpointing) when this much wall time has passed; call again to continue.
    train_limit : int, optional
        Use only the first ``train_limit`` training cases (tests, quick trials). Without it, exactly the config's
        ``dataset.cases.train`` cases (InputError if the folder holds fewer).
    progress : callable(fraction) or None
        Called after every step with the fraction of all steps done; may raise Cancelled (state is saved first).

    Returns
    -------
    dict
        ``finished`` (bool), ``epoch``, ``step``, ``val_mse`` and ``seconds`` of this call.
    """
    check_network_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(config["training"]["seed"]))
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input size: let cuDNN pick the fastest kernels
    train_set, val_set = _datasets(config, data_dir, train_limit, dev)
    run = _Run(config, len(train_set), out_dir, dev)
    if run.resume(dev):
        log(f"{out_dir} holds a finished run ({run.step} steps); nothing to do")
        return run.result(True, run.epochs, seconds=0.0)
    if run.step:
        log(f"resuming at step {run.step} of {run.total_steps}")
    run.started = time.perf_counter()
    try:
        while run.step < run.total_steps:
            epoch = run.step // run.steps_per_epoch
            train_mse, out_of_time = run.train_epoch(train_set, checkpoint_every, max_minutes, progress)
            if out_of_time:
                run.save_checkpoint()
                log(f"stopped at step {run.step} of {run.total_steps} (time budget); run again to continue")
                return run.result(False, epoch)
            run.end_epoch(epoch, train_mse, val_set, dev, log)
    except (Cancelled, KeyboardInterrupt):
        run.save_checkpoint()  # Ctrl-C or Cancel loses nothing: the next call resumes here
        raise
    summary = {"train_cases": len(train_set), "val_cases": len(val_set), "epochs": run.epochs, "steps": run.step,
               "val_mse": run.val_mse, "device": str(dev), "torch": str(torch.__version__)}
    _save({"state_dict": run.model.state_dict(), "config": config, "summary": summary}, out_dir / WEIGHTS_NAME)
    return run.result(True, run.epochs)
