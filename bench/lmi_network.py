"""Inverse-network variants at a small training budget, and what the lesion's volumes alone predict.

Each variant is the shipped config with some ``network`` keys changed, trained by ``lmi/training/train_network.py``
on the first ``--cases`` training cases for ``--epochs`` epochs (into ``--work``), then scored on the validation
split: median |log error| of mu1, mu2, mu1 mu2 (the lesion's size) and mu1 / mu2 (the width of its edge), median
seed error in mm.
Two baselines without convolutions, fitted on the same cases, show how much of that is in the volumes alone:

- ``least squares``: a quadratic polynomial in the six :class:`LesionStatistics` numbers (log volumes in mL of the core
  and of the whole lesion, mean WM and GM under each), fitted to log mu1 and log mu2;
- ``statistics MLP``: those six numbers into an MLP of the shipped head's size (64 ReLU units), ``--mlp-steps``
  steps of plain Adam (constant learning rate) on batches of 32.

Usage::

    python bench/lmi_network.py [--data .lmi_data] [--cases 4000] [--epochs 3] [--work /tmp/lmi_variants]
                                [--only baselines|variants] [--variant NAME ...]

About 5 minutes per variant on 2 CPU cores (10 for width 24); a finished run in ``--work`` is reused. Nothing else
should run meanwhile (torch's threads slow down 4x).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.lmi.config import load_config, target_scaling  # noqa: E402
from TumorPersonalizationLib.lmi.estimators import predict_labels  # noqa: E402
from TumorPersonalizationLib.lmi.inputs import assemble, crop_labels  # noqa: E402
from TumorPersonalizationLib.lmi.network import (WEIGHTS_NAME, LesionStatistics, grid_voxel_ml,  # noqa: E402
                                                 load_network)
from TumorPersonalizationLib.lmi.training import dataset  # noqa: E402
from TumorPersonalizationLib.lmi.training.train_network import train  # noqa: E402

VARIANTS = {  # each names its width: the shipped config's may change
    "MLP head + lesion statistics": {"head_hidden": 64, "lesion_statistics": True, "width": 16},
    "the same, width 24 (shipped)": {"head_hidden": 64, "lesion_statistics": True, "width": 24},
}
"""The variants of the shipped architecture. (The thesis' one linear head, an MLP head without the lesion
statistics and offset channels from the lesion centre were measured here and did not ship: docs/methods/lmi.md,
and the git history for the code.)"""


def errors(predicted: np.ndarray, truth: np.ndarray, spacing_mm: float) -> dict:
    """Median |log error| of mu1, mu2, their product and ratio; median seed error (mm) if seeds are given."""
    e = np.log(np.maximum(predicted[:, :2], 1e-2)) - np.log(truth[:, :2])
    out = {"mu1": np.median(np.abs(e[:, 0])), "mu2": np.median(np.abs(e[:, 1])),
           "mu1*mu2": np.median(np.abs(e[:, 0] + e[:, 1])), "mu1/mu2": np.median(np.abs(e[:, 0] - e[:, 1]))}
    if predicted.shape[1] == 5:
        out["seed mm"] = np.median(np.linalg.norm(predicted[:, 2:5] - truth[:, 2:5], axis=1)) * spacing_mm
    return {k: round(float(v), 3) for k, v in out.items()}


def statistics(data: dict, tissue: np.ndarray, config: dict) -> np.ndarray:
    """(n, 6) LesionStatistics of the cases' network inputs."""
    out, crop_size, measure = [], int(config["input"]["crop_size"]), LesionStatistics(grid_voxel_ml(config))
    for start in range(0, len(data["labels"]), 500):
        crops, origins, _ = crop_labels(data["labels"][start:start + 500], crop_size)
        out.append(measure(torch.from_numpy(assemble(crops, origins, tissue))).numpy())
    return np.concatenate(out).astype(np.float64)


def quadratic_terms(x: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(x.shape[1])
    return np.column_stack([np.ones(len(x)), x, x[:, i] * x[:, j]])


def least_squares(train_x, train_y, val_x) -> np.ndarray:
    """log mu1, log mu2 by a quadratic polynomial in the statistics -> (n, 2) mu1, mu2 of the validation cases."""
    coefficients, *_ = np.linalg.lstsq(quadratic_terms(train_x), np.log(train_y[:, :2]), rcond=None)
    return np.exp(quadratic_terms(val_x) @ coefficients)


def statistics_mlp(train_x, train_y, val_x, config: dict, steps: int) -> np.ndarray:
    """An MLP of the shipped head's size on the statistics alone, MSE on the scaled mu1, mu2 -> (n, 2) mu1, mu2."""
    torch.manual_seed(0)
    hidden = int(config["network"]["head_hidden"])
    mlp = torch.nn.Sequential(torch.nn.Linear(train_x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
    optimiser = torch.optim.Adam(mlp.parameters(), lr=config["training"]["learning_rate"])
    scaling = target_scaling(config)
    x, y = torch.from_numpy(train_x).float(), torch.from_numpy(scaling.scale(train_y)[:, :2])
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = torch.from_numpy(rng.integers(0, len(x), 32))
        loss = torch.mean((mlp(x[batch]) - y[batch]) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        scaled = np.zeros((len(val_x), 5))
        scaled[:, :2] = mlp(torch.from_numpy(val_x).float()).numpy()
    return scaling.unscale(scaled)[:, :2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".lmi_data")
    parser.add_argument("--cases", type=int, default=4000, help="first training cases used")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mlp-steps", type=int, default=3000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmi_variants"), help="training runs go here")
    parser.add_argument("--only", choices=["baselines", "variants"], help="run only one part")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="only these variants")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    base = load_config()
    spacing = float(base["grid"]["spacing_mm"])
    tissue = dataset.load_tissue(args.data)
    val = dataset.load_split(args.data, "val")
    truth = val["targets"].astype(np.float64)
    results = {}
    if args.only != "variants":
        train_data = dataset.load_split(args.data, "train", limit=args.cases)
        train_x, val_x = statistics(train_data, tissue, base), statistics(val, tissue, base)
        train_y = train_data["targets"].astype(np.float64)
        results["least squares on the statistics"] = errors(least_squares(train_x, train_y, val_x), truth, spacing)
        results["statistics MLP"] = errors(statistics_mlp(train_x, train_y, val_x, base, args.mlp_steps), truth,
                                           spacing)
        results["training median (no input)"] = errors(
            np.tile(np.median(train_y[:, :2], axis=0), (len(truth), 1)), truth, spacing)
    variants = {k: v for k, v in VARIANTS.items() if not args.variant or k in args.variant}
    for name, network in variants.items() if args.only != "baselines" else ():
        config = copy.deepcopy(base)
        config["network"].update(network)
        config["training"]["epochs"] = args.epochs
        # One folder per config and case count: a finished run is reused, a changed config starts afresh.
        key = hashlib.sha256(json.dumps([config, args.cases], sort_keys=True).encode()).hexdigest()[:12]
        folder = args.work / f"{key}_{args.cases}x{args.epochs}"
        start = time.perf_counter()
        run = train(config, args.data, folder, train_limit=args.cases, log=lambda *_: None)
        model, _ = load_network(folder / WEIGHTS_NAME)
        predicted = predict_labels(model, config, val["labels"], tissue)
        results[name] = {"val MSE": round(run["val_mse"], 4), **errors(predicted, truth, spacing),
                         "minutes": round((time.perf_counter() - start) / 60, 1)}
        print(name, results[name], flush=True)
    keys = ["val MSE", "mu1", "mu2", "mu1*mu2", "mu1/mu2", "seed mm"]
    print(f"\nValidation set ({len(truth)} cases), trained on the first {args.cases} cases, {args.epochs} epochs; "
          "median |log error| (seed: mm)")
    print(f"{'':42s}" + "".join(f"{k:>10s}" for k in keys))
    for name, row in results.items():
        print(f"{name:42s}" + "".join(f"{row[k]:10.3f}" if k in row else f"{'':10s}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
