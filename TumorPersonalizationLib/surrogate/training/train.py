"""Training of the surrogate: Adam on the thesis' L1 loss over the tumor and CSF areas, resumable and deterministic.

Loss (thesis eq. 3): ``sum |u_sim - u_pred| over the tumor area + sum |u_sim - u_pred| over the CSF area``, the tumor
area being u_sim > ``loss.tumor_min`` (the thesis: > 0; the small floor leaves out the rounding of the stored
float16 crops and the faint halo the crop's low-pass spreads around a tumor) and the CSF area the voxels with
CSF >= ``loss.csf_min``. Both sums are divided by the crop's voxel count (a constant, so only the loss' scale
changes) and averaged over the batch. The rest of the brain and the background
are not penalised: the thesis' ablation (Table I) found every extra term worse.

Optimiser and schedule: Adam with the config's betas (thesis: 0.5, 0.999), the learning rate cosine-annealed from
``learning_rate`` to ``final_learning_rate`` over all steps (thesis: 1e-4 to 2.5e-6 over 30 epochs, batch 16).

Augmentation (``training.augment``): each training crop is flipped along a random subset of its axes and its axes
permuted at random, tissue and density alike. The physics is isotropic and the crop is a cube centred on the seed
(:mod:`..crop`), so each of the 48 versions is another valid case; it also makes the network indifferent to the
orientation of the patient's grid.

Resuming: state (model, optimiser, step) is checkpointed every ``checkpoint_every`` steps and at each epoch's end; a
new call with the same folder continues where the last one stopped, with the same batch order and augmentation
(each epoch's permutation and each step's augmentation come from the seed, the epoch and the step).
The log ``training_log.jsonl`` gets one line per checkpoint (running training loss) and one per epoch (validation
loss, Dice at 0.2 / 0.4 / 0.8 and MAE per tissue on the crop grid).
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
from ..config import WEIGHTS_NAME, check_parameter_section, crop_size, crop_spacing_mm, normalise_parameters
from ..network import SurrogateNet, check_network_config
from ..scores import case_scores, mean_scores
from .dataset import TISSUE_SCALE, check_manifest, load_split

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "training_log.jsonl"
CSF_CHANNEL = 2


class CropSet:
    """Cases held compactly (uint8 tissue, float16 density) and turned into float batches on demand.

    Parameters
    ----------
    data : dict
        ``tissue`` (n, 3, D, D, D) uint8, ``density`` (n, D, D, D) float16, ``parameters`` (n, 3), as
        :func:`.dataset.load_split` returns them.
    config : dict
    device : torch.device
    """

    def __init__(self, data: dict, config: dict, device: torch.device):
        self.tissue = torch.from_numpy(np.ascontiguousarray(data["tissue"]))
        self.density = torch.from_numpy(np.ascontiguousarray(data["density"]))
        self.parameters = torch.from_numpy(normalise_parameters(config, data["parameters"]))
        self.device = device
        self.memory_format = (torch.channels_last_3d if config["training"].get("channels_last", False)
                              else torch.contiguous_format)

    def __len__(self) -> int:
        return len(self.parameters)

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None):
        """(tissue (B, 3, D, D, D), parameters (B, 3), density (B, 1, D, D, D)) float32 on the device; augmented
        (random flips and axis permutations) when ``rng`` is given."""
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        tissue = self.tissue[index].float() / TISSUE_SCALE
        density = self.density[index].float()[:, None]
        if rng is not None:
            tissue, density = augment(tissue, density, rng)
        tissue = tissue.to(self.device).contiguous(memory_format=self.memory_format)
        return tissue, self.parameters[index].to(self.device), density.to(self.device)


def augment(tissue: torch.Tensor, density: torch.Tensor, rng: np.random.Generator):
    """Flip each (C, D, D, D) sample along random axes and permute its axes at random (the same for both)."""
    tissue_out, density_out = torch.empty_like(tissue), torch.empty_like(density)
    for b in range(len(tissue)):
        order = [1 + int(a) for a in rng.permutation(3)]
        flips = [1 + a for a in range(3) if rng.random() < 0.5]
        tissue_out[b] = tissue[b].permute(0, *order).flip(flips)
        density_out[b] = density[b].permute(0, *order).flip(flips)
    return tissue_out, density_out


def region_l1_loss(predicted: torch.Tensor, target: torch.Tensor, tissue: torch.Tensor, loss: dict) -> torch.Tensor:
    """Thesis eq. 3 (module docstring): L1 in the tumor area plus L1 in the CSF area, per crop voxel, batch mean.

    ``predicted``, ``target``: (B, 1, D, D, D); ``tissue``: (B, 3, D, D, D).
    """
    error = (predicted - target).abs()
    tumor = (target > loss["tumor_min"]).to(error.dtype)
    csf = (tissue[:, CSF_CHANNEL:CSF_CHANNEL + 1] >= loss["csf_min"]).to(error.dtype)
    return (error * tumor).mean() + (error * csf).mean()


def learning_rate(cfg: dict, step: int, total: int) -> float:
    """Cosine annealing from ``learning_rate`` to ``final_learning_rate`` over ``total`` steps."""
    lr0, lr1 = cfg["learning_rate"], cfg["final_learning_rate"]
    return lr1 + 0.5 * (lr0 - lr1) * (1.0 + math.cos(math.pi * min(step / max(total, 1), 1.0)))


def _save(obj, path: Path) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


def evaluate(model: SurrogateNet, cases: CropSet, config: dict, batch_size: int) -> dict:
    """Validation loss and the mean of :func:`..scores.case_scores` on the crop grid."""
    model.eval()
    losses, rows = [], []
    spacing = (crop_spacing_mm(config),) * 3
    with torch.no_grad():
        for start in range(0, len(cases), batch_size):
            index = np.arange(start, min(start + batch_size, len(cases)))
            tissue, parameters, target = cases.batch(index)
            predicted = model(tissue, parameters)
            losses.append(float(region_l1_loss(predicted, target, tissue, config["loss"])) * len(index))
            for p, t, m in zip(predicted.float().cpu().numpy(), target.cpu().numpy(), tissue.float().cpu().numpy()):
                rows.append(case_scores(p[0], t[0], m, spacing, tumor_min=config["loss"]["tumor_min"]))
    model.train()
    return {"val_loss": sum(losses) / max(len(cases), 1), **mean_scores(rows)}


class _Run:
    """One training run's state: model, optimiser, step reached, and the checkpoint in ``out_dir``."""

    def __init__(self, config: dict, n_train: int, out_dir: Path, device: torch.device):
        self.config, self.cfg, self.out_dir, self.device = config, config["training"], out_dir, device
        self.batch_size, self.epochs = int(self.cfg["batch_size"]), int(self.cfg["epochs"])
        self.steps_per_epoch = n_train // self.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{n_train} training cases are fewer than one batch of {self.batch_size}")
        self.total_steps = self.steps_per_epoch * self.epochs
        memory_format = torch.channels_last_3d if self.cfg.get("channels_last", False) else torch.contiguous_format
        self.model = SurrogateNet.from_config(config).to(device).to(memory_format=memory_format)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=self.cfg["learning_rate"],
                                          betas=tuple(self.cfg["adam_betas"]))
        self.autocast = bool(self.cfg.get("mixed_precision", False)) and device.type == "cuda"
        self.step, self.elapsed_before, self.last_validation = 0, 0.0, {}
        # A checkpoint continues only the run it came from: same config, same training set size.
        self.run_id = hashlib.sha256(json.dumps([config, n_train], sort_keys=True).encode()).hexdigest()
        self.checkpoint = out_dir / CHECKPOINT_NAME
        self.started = time.perf_counter()

    def resume(self) -> bool:
        """Load the checkpoint if there is one; True when it holds a finished run whose weights exist."""
        if not self.checkpoint.exists():
            return False
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if state.get("run_id") != self.run_id:
            raise InputError(f"{self.checkpoint} belongs to another config or training set; use a new --out folder")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.step, self.elapsed_before = int(state["step"]), float(state["seconds"])
        self.last_validation = json.loads(state.get("validation", "{}"))
        return self.step >= self.total_steps and (self.out_dir / WEIGHTS_NAME).exists()

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save_checkpoint(self) -> None:
        _save({"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(), "step": self.step,
               "seconds": self.seconds(), "run_id": self.run_id,
               "validation": json.dumps(self.last_validation)}, self.checkpoint)

    def write_log(self, entry: dict, log) -> None:
        with open(self.out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(entry) + "\n")
        log(json.dumps(entry))

    def train_step(self, train_set: CropSet, index: np.ndarray) -> float:
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, self.total_steps)
        rng = np.random.default_rng([int(self.cfg["seed"]), 1, self.step]) if self.cfg.get("augment") else None
        tissue, parameters, target = train_set.batch(index, rng)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            predicted = self.model(tissue, parameters)
        loss = region_l1_loss(predicted.float(), target, tissue, self.config["loss"])
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.step += 1
        return float(loss.detach())

    def train_epoch(self, train_set: CropSet, max_minutes, progress, log) -> tuple[float, bool]:
        """Steps to the end of the current epoch (from where it stands); (mean training loss, out of time)."""
        epoch, position = divmod(self.step, self.steps_per_epoch)
        order = np.random.default_rng([int(self.cfg["seed"]), 0, epoch]).permutation(len(train_set))
        every = int(self.cfg["checkpoint_every"])
        epoch_sum, epoch_count, window = 0.0, 0, []
        for position in range(position, self.steps_per_epoch):
            loss = self.train_step(train_set, order[position * self.batch_size:(position + 1) * self.batch_size])
            epoch_sum, epoch_count = epoch_sum + loss, epoch_count + 1
            window.append(loss)
            if self.step % every == 0:
                self.save_checkpoint()
                self.write_log({"step": self.step, "train_loss": float(np.mean(window)),
                                "learning_rate": learning_rate(self.cfg, self.step, self.total_steps),
                                "seconds": round(self.seconds(), 1)}, log)
                window = []
            if progress is not None:
                progress(self.step / self.total_steps)
            if max_minutes is not None and time.perf_counter() - self.started > 60.0 * max_minutes:
                return epoch_sum / max(epoch_count, 1), True
        return epoch_sum / max(epoch_count, 1), False

    def end_epoch(self, epoch: int, train_loss: float, val_set: CropSet, log) -> None:
        """Validate, log the epoch and checkpoint."""
        self.last_validation = evaluate(self.model, val_set, self.config, self.batch_size)
        self.write_log({"epoch": epoch + 1, "step": self.step, "train_loss": train_loss,
                        **{k: round(v, 5) for k, v in self.last_validation.items()},
                        "seconds": round(self.seconds(), 1), "device": str(self.device)}, log)
        self.save_checkpoint()


def check_training_config(config: dict) -> None:
    """InputError unless the config's parameter, crop and network sections fit together."""
    check_parameter_section(config)
    check_network_config(config["network"], crop_size(config), len(config["parameters"]))


def load_sets(config: dict, data_dir, train_limit: int | None, device: torch.device) -> tuple[CropSet, CropSet]:
    """Exactly the config's ``dataset.cases.train`` training cases and its ``dataset.cases.val`` validation cases:
    extra shards must not change a run silently. A trial (``train_limit``) takes the first ``train_limit`` training
    cases and whatever validation shards exist."""
    check_manifest(data_dir, config)
    cases = config["dataset"]["cases"]
    wanted = int(cases["train"]) if train_limit is None else min(int(train_limit), int(cases["train"]))
    train_data = load_split(data_dir, "train", limit=wanted)
    if len(train_data["parameters"]) < wanted:
        raise InputError(f"{data_dir} holds {len(train_data['parameters'])} training cases, the config asks for "
                         f"{wanted}: make the missing shards with Scripts/surrogate_make_dataset.py")
    val_data = load_split(data_dir, "val", limit=int(cases["val"]) if train_limit is None else None)
    return CropSet(train_data, config, device), CropSet(val_data, config, device)


def train(config: dict, data_dir, out_dir, *, device: str = "cpu", max_minutes: float | None = None,
          train_limit: int | None = None, progress=None, log=print) -> dict:
    """Train (or continue training) the surrogate described by ``config``.

    Parameters
    ----------
    config : dict
        A surrogate config (``network``, ``loss``, ``training``, ``dataset`` sections).
    data_dir : path
        Dataset folder of ``Scripts/surrogate_make_dataset.py`` (train and val shards, ``dataset.json``).
    out_dir : path
        Receives ``checkpoint.pt``, ``training_log.jsonl`` and, once every epoch is done, ``surrogate.pt``
        (state dict, config and a summary; load with :func:`..model.load_surrogate`).
    device : str
        "cpu" or "cuda".
    max_minutes : float, optional
        Stop (after checkpointing) when this much wall time has passed in this call; call again to continue.
    train_limit : int, optional
        Use only the first ``train_limit`` training cases (tests, quick trials).
    progress : callable(fraction) or None
        Called after every step; may raise Cancelled (the state is saved first).
    log : callable(str)
        Receives each log line.

    Returns
    -------
    dict
        ``finished`` (bool), ``step``, ``total_steps``, ``seconds`` (all calls together) and the last validation.
    """
    check_training_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(config["training"]["seed"]))
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input size: let cuDNN pick the fastest kernels
    train_set, val_set = load_sets(config, data_dir, train_limit, dev)
    run = _Run(config, len(train_set), out_dir, dev)
    result = lambda finished: {"finished": finished, "step": run.step, "total_steps": run.total_steps,  # noqa: E731
                               "seconds": round(run.seconds(), 1), **run.last_validation}
    if run.resume():
        log(f"{out_dir} holds a finished run ({run.step} steps); nothing to do")
        return result(True)
    if run.step:
        log(f"resuming at step {run.step} of {run.total_steps}")
    run.started = time.perf_counter()
    try:
        while run.step < run.total_steps:
            epoch = run.step // run.steps_per_epoch
            train_loss, out_of_time = run.train_epoch(train_set, max_minutes, progress, log)
            if out_of_time:
                run.save_checkpoint()
                log(f"stopped at step {run.step} of {run.total_steps} (time budget); run again to continue")
                return result(False)
            run.end_epoch(epoch, train_loss, val_set, log)
    except (Cancelled, KeyboardInterrupt):
        run.save_checkpoint()  # Ctrl-C or Cancel loses nothing: the next call resumes here
        raise
    summary = {"train_cases": len(train_set), "val_cases": len(val_set), "epochs": run.epochs, "steps": run.step,
               "seconds": round(run.seconds(), 1), "device": str(dev), "torch": str(torch.__version__),
               "validation": run.last_validation}
    state = {k: v.contiguous() for k, v in run.model.state_dict().items()}
    _save({"state_dict": state, "config": config, "summary": summary}, out_dir / WEIGHTS_NAME)
    return result(True)
