"""Training of the inverse network: AdamW on the mean squared error of the scaled targets, resumable.

One function, :func:`train`, serves the CPU config (minutes per epoch on 2 cores) and a full-size config on a GPU.
State is checkpointed (model, optimiser, schedule position, step within the epoch) every ``checkpoint_every`` steps
and at each epoch's end; a new call with the same folder continues where the last one stopped, with the same batch
order (each epoch's permutation comes from the seed and the epoch number).

Schedule: cosine decay from ``learning_rate`` to ``final_learning_rate`` over all steps. The thesis used
6e-5 with a slow exponential decay over many more epochs on 80k cases; a short CPU run needs a larger start.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..files import atomic_path
from .config import target_scaling
from .dataset import check_manifest, load_split, load_tissue, relative_targets
from .inputs import crop_labels, input_channels, network_input
from .network import InverseNet
from .weights import load_state, read_weights_file

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "inverse_net.pt"
LOG_NAME = "training_log.jsonl"


class _Batches:
    """Cases as lesion-centred label crops and scaled targets; assembles the network input batch by batch."""

    def __init__(self, data: dict, tissue_wm_gm: np.ndarray, config: dict, device: torch.device):
        self.config = config
        self.crops, self.origins, self.centres = crop_labels(data["labels"], int(config["input"]["crop_size"]))
        scaling = target_scaling(config)
        self.targets = torch.from_numpy(scaling.scale(relative_targets(data["targets"], self.centres))).to(device)
        self.tissue = tissue_wm_gm
        self.device = device

    def __len__(self):
        return len(self.targets)

    def get(self, index: np.ndarray):
        x = network_input(self.config, self.crops[index], self.origins[index], self.centres[index], self.tissue)
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
        (state dict, config and a summary; load with ``torch.load(weights_only=True)``).
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
    cfg = config["training"]
    if int(config["network"]["in_channels"]) != input_channels(config):
        raise InputError(f"config: network.in_channels is {config['network']['in_channels']}, but its input "
                         f"settings make {input_channels(config)} channels (lmi/inputs.py)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(cfg["seed"]))
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input size: let cuDNN pick the fastest kernels
    scaling = target_scaling(config)
    check_manifest(data_dir, config)
    # The config's count, not whatever the folder holds: extra shards must not change the run silently.
    wanted = int(config["dataset"]["cases"]["train"])
    targets = cfg.get("targets", "true")  # "refined": learn what the refinement finds (lmi/amortisation.py)
    train_data = load_split(data_dir, "train", limit=wanted if train_limit is None else min(train_limit, wanted),
                            targets=targets)
    if train_limit is None and len(train_data["targets"]) < wanted:
        raise InputError(f"{data_dir} holds {len(train_data['targets'])} training cases, the config asks for "
                         f"{wanted}: make the missing shards with Scripts/lmi_make_dataset.py")
    val_data = load_split(data_dir, "val", targets=targets)
    tissue = load_tissue(data_dir)
    train_set, val_set = (_Batches(d, tissue, config, dev) for d in (train_data, val_data))
    batch_size, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps_per_epoch = len(train_set) // batch_size
    if steps_per_epoch == 0:
        raise InputError(f"{len(train_set)} training cases are fewer than one batch of {batch_size}")
    total_steps = steps_per_epoch * epochs

    model = InverseNet.from_config(config).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], betas=tuple(cfg["adam_betas"]),
                                  weight_decay=cfg["weight_decay"])
    step, elapsed_before, val_mse = 0, 0.0, float("nan")
    # A checkpoint continues only the run it came from: same config, same training set.
    run_id = hashlib.sha256(json.dumps([config, len(train_set)], sort_keys=True).encode()).hexdigest()
    checkpoint = out_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=dev, weights_only=True)
        if state.get("run_id") != run_id:
            raise InputError(f"{checkpoint} belongs to another config or training set; use a new --out folder")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, elapsed_before = int(state["step"]), float(state["seconds"])
        val_mse = float(state.get("val_mse", float("nan")))
        if step >= total_steps and (out_dir / WEIGHTS_NAME).exists():
            log(f"{out_dir} holds a finished run ({step} steps); nothing to do")
            return {"finished": True, "epoch": epochs, "step": step, "val_mse": val_mse, "seconds": 0.0}
        log(f"resuming at step {step} of {total_steps}")

    start = time.perf_counter()

    def save_checkpoint():
        _save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
               "seconds": elapsed_before + time.perf_counter() - start, "run_id": run_id, "val_mse": val_mse},
              checkpoint)

    def write_log(entry: dict):
        with open(out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(entry) + "\n")

    running, count = 0.0, 0
    try:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            order = np.random.default_rng([int(cfg["seed"]), epoch]).permutation(len(train_set))
            for position in range(position, steps_per_epoch):
                for group in optimiser.param_groups:
                    group["lr"] = _learning_rate(cfg, step, total_steps)
                x, y = train_set.get(order[position * batch_size:(position + 1) * batch_size])
                loss = torch.mean((model(x) - y) ** 2)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                running, count = running + float(loss.detach()), count + 1
                if step % checkpoint_every == 0:
                    save_checkpoint()
                out_of_time = max_minutes is not None and time.perf_counter() - start > 60.0 * max_minutes
                if progress is not None:
                    progress(step / total_steps)
                if out_of_time:
                    save_checkpoint()
                    log(f"stopped at step {step} of {total_steps} (time budget); run again to continue")
                    return {"finished": False, "epoch": epoch, "step": step, "val_mse": val_mse,
                            "seconds": time.perf_counter() - start}
            val_mse, val_mae = evaluate(model, val_set, batch_size)
            seconds = elapsed_before + time.perf_counter() - start
            entry = {"epoch": epoch + 1, "step": step, "train_mse": running / max(count, 1), "val_mse": val_mse,
                     "val_mae_scaled": dict(zip(scaling.NAMES, np.round(val_mae, 5).tolist())),
                     "learning_rate": _learning_rate(cfg, step, total_steps), "seconds": round(seconds, 1),
                     "device": str(dev)}
            write_log(entry)
            log(json.dumps(entry))
            running, count = 0.0, 0
            save_checkpoint()
    except (Cancelled, KeyboardInterrupt):
        save_checkpoint()  # Ctrl-C or Cancel loses nothing: the next call resumes here
        raise

    summary = {"train_cases": len(train_set), "val_cases": len(val_set), "epochs": epochs, "steps": step,
               "val_mse": val_mse, "device": str(dev), "torch": str(torch.__version__)}
    _save({"state_dict": model.state_dict(), "config": config, "summary": summary}, out_dir / WEIGHTS_NAME)
    return {"finished": True, "epoch": epochs, "step": step, "val_mse": val_mse,
            "seconds": time.perf_counter() - start}


def load_network(path, device: str = "cpu") -> tuple[InverseNet, dict]:
    """Load trained weights (``torch.load(weights_only=True)``): the network in eval mode and its config."""
    saved = read_weights_file(path, {"state_dict", "config"}, "LMI weights", device,
                              hint=f" (a training checkpoint? use {WEIGHTS_NAME})")
    model = InverseNet.from_config(saved["config"]).to(device)
    load_state(model, saved, path, "LMI weights")
    return model, saved["config"]
