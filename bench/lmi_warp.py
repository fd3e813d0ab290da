"""Learn-Morph-Infer under registration misalignment: how the estimators' mu1, mu2 and seed degrade when the
lesion does not lie exactly on the atlas' tissue.

A patient's masks reach the atlas through a registration that leaves a smooth residual misalignment of a few mm
between the tumor's outline and the atlas' white matter (``bench/lmi_anatomy.py``). This benchmark imitates it on
the held-out test set: each case is grown on the atlas' 1.5 mm grid and taken onto the 3 mm network grid as in
``bench/lmi.py``, then warped by a random smooth displacement (:mod:`TumorPersonalizationLib.lmi.training.label_warp`;
``--smoothness-mm``, RMS per component ``--amplitudes-mm``), and the inverse network and the shape and seed
regressors estimate from the warped labels. Printed: median relative error of mu1 and mu2 and the median seed
error per amplitude, for each estimator. The seed is scored against the true seed (the warp moves the lesion by
about the amplitude, so the seed error grows with it by construction).

Usage::

    python bench/lmi_warp.py [--data .lmi_data] [--cases 300] [--amplitudes-mm 0 1.5 3] [--smoothness-mm 15]
                             [--shape-weights W] [--seed-weights W] [--workers 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lmi import grow_test_labels, parameter_errors  # noqa: E402 (bench/lmi.py)

from TumorPersonalizationLib.lmi.config import mu_bounds, network_tissue  # noqa: E402
from TumorPersonalizationLib.lmi.estimators import predict_labels  # noqa: E402
from TumorPersonalizationLib.lmi.models import (default_seed_weights, default_shape_weights,  # noqa: E402
                                                default_weights, load_seed_model, load_shape_model)
from TumorPersonalizationLib.lmi.network import load_network  # noqa: E402
from TumorPersonalizationLib.lmi.training import dataset, label_warp  # noqa: E402

FIELD_SEED = 7


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".lmi_data", help="dataset folder with test shards")
    parser.add_argument("--weights", type=Path, default=default_weights())
    parser.add_argument("--shape-weights", type=Path, default=default_shape_weights())
    parser.add_argument("--seed-weights", type=Path, default=default_seed_weights())
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--amplitudes-mm", type=float, nargs="+", default=[0.0, 1.5, 3.0])
    parser.add_argument("--smoothness-mm", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2, help="processes that grow the test cases")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)

    model, config = load_network(args.weights)
    shape_model = load_shape_model(args.shape_weights, config)
    seed_model = load_seed_model(args.seed_weights, config)
    data = dataset.load_split(args.data, "test", limit=args.cases)
    n = len(data["targets"])
    labels = grow_test_labels(args.data, config, n, args.workers)["labels"]
    tissue = network_tissue(config)
    wm_gm = np.stack([tissue.wm.array, tissue.gm.array])
    spacing_mm = float(config["grid"]["spacing_mm"])
    geometry = tissue.wm.geometry
    true_seed = geometry.index_to_ras(data["targets"][:, 2:5])
    bounds = np.transpose(mu_bounds(config))
    rng = np.random.default_rng(FIELD_SEED)
    results = {}
    print(f"\n{n} test cases, smooth warps ({args.smoothness_mm:g} mm): median relative error mu1 / mu2, seed mm")
    for amplitude in args.amplitudes_mm:
        warped = np.stack([label_warp.warp_labels(case, label_warp.random_displacement(
            case.shape, amplitude, args.smoothness_mm, spacing_mm, rng)) for case in labels])
        keep = (warped == 2).reshape(n, -1).any(axis=1)  # a warp can squeeze a tiny T1Gd core off the grid
        network = predict_labels(model, config, warped[keep], wm_gm)
        regressed = predict_labels(model, config, warped[keep], wm_gm, shape_model=shape_model,
                                   seed_model=seed_model)
        shape_mu_, shape_seed_ras = np.clip(regressed[:, :2], *bounds), geometry.index_to_ras(regressed[:, 2:5])
        estimates = {"ResNet": (np.clip(network[:, :2], *bounds), geometry.index_to_ras(network[:, 2:5])),
                     "shape regressors": (shape_mu_, shape_seed_ras)}
        row = {}
        for name, (mu, seed_ras) in estimates.items():
            errors = np.median(parameter_errors(mu, data["targets"][keep, :2], seed_ras, true_seed[keep]), axis=0)
            row[name] = {"mu1": float(errors[0]), "mu2": float(errors[1]), "seed_mm": float(errors[2])}
        row["cases"] = int(keep.sum())
        results[f"{amplitude:g}"] = row
        print(f"  {amplitude:4.1f} mm ({row['cases']} cases): "
              + "; ".join(f"{name} {row[name]['mu1']:.3f} / {row[name]['mu2']:.3f}, seed {row[name]['seed_mm']:.1f} mm"
                          for name in estimates), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"smoothness_mm": args.smoothness_mm, "cases": n, "by_amplitude_mm": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
