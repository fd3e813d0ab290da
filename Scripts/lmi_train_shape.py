"""Train the Learn-Morph-Infer shape regressors (mu1, mu2 and the seed from the lesion's shape) from the config.

The shipped ``Resources/LMI/shape_regressor.pt`` and ``shape_regressor_log.json`` (mu1, mu2), and
``seed_regressor.pt`` and ``seed_regressor_log.json`` (the seed; made when the config has a ``seed_regressor``
section) are this script's output for ``Resources/LMI/config.json`` on the dataset made by
``Scripts/lmi_make_dataset.py``::

    python Scripts/lmi_make_dataset.py --out lmi_data
    python Scripts/lmi_train_shape.py --data lmi_data --out Resources/LMI [--workers N]

The config's ``shape_regressor.labels`` says which masks the features are read from: ``"dataset"``, the stored
labels of the 3 mm simulations, or ``"atlas"`` (shipped), the same cases regrown on the atlas' 1.5 mm grid as a
patient's masks arrive and taken onto the 3 mm network grid (made first by ``Scripts/lmi_grow_atlas.py --data
lmi_data``, ~35 min on 2 cores). Both regressors read the lesion on the network grid
(:mod:`TumorPersonalizationLib.lmi.lesion_descriptors`).

The shape features and seed vectors of every training and validation case are computed first (one process per
core, ~35 ms per case) and kept in the dataset folder (``shape_features_{labels}_{split}.npz``), so a second run
only trains (seconds to a minute).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import InputError, run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus  # noqa: E402
from TumorPersonalizationLib.files import atomic_path  # noqa: E402
from TumorPersonalizationLib.lmi import lesion_descriptors  # noqa: E402
from TumorPersonalizationLib.lmi.config import load_config  # noqa: E402
from TumorPersonalizationLib.lmi.grids import network_lesion  # noqa: E402
from TumorPersonalizationLib.lmi.seed_features import VECTOR_NAMES  # noqa: E402
from TumorPersonalizationLib.lmi.shape_features import FEATURE_NAMES  # noqa: E402
from TumorPersonalizationLib.lmi.shape_regressor import DEFAULT_SETTINGS, SEED_WEIGHTS_NAME, WEIGHTS_NAME  # noqa: E402
from TumorPersonalizationLib.lmi.training import atlas_growth, dataset  # noqa: E402
from TumorPersonalizationLib.lmi.training.train_regressors import fit, fit_seed  # noqa: E402

LOG_NAME = "shape_regressor_log.json"
SEED_LOG_NAME = "seed_regressor_log.json"
LABEL_SOURCES = ("dataset", "atlas")


@dataclass(frozen=True)
class Inputs:
    """What the regressors read: from which masks (``source``, one of :data:`LABEL_SOURCES`), the shape features
    and seed vectors by name (:mod:`TumorPersonalizationLib.lmi.lesion_descriptors`) and the config they are for."""
    source: str
    feature_names: tuple
    vector_names: tuple
    config: dict


def _features_of_shard(path: Path, split: str, index: int, inputs: Inputs) -> dict:
    """One shard's (``index``: its number in the split) cases: (cases, F) shape ``features``, (cases, 2) ``mu``
    (mu1, mu2), (cases, V, 3) seed ``vectors`` and (cases, 3) ``offsets``, the true seed minus the core's centroid
    (mm)."""
    try:
        with np.load(path) as shard:
            labels, targets = shard["labels"], shard["targets"].astype(np.float64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise InputError(f"dataset shard {path}: cannot read it ({error})") from error
    if inputs.source == "atlas":
        labels = atlas_growth.load_labels(path.parent, split, index, len(labels))
    n = len(labels)
    out = {"features": np.full((n, len(inputs.feature_names)), np.nan), "mu": targets[:, :2],
           "vectors": np.full((n, len(inputs.vector_names), 3), np.nan), "offsets": np.full((n, 3), np.nan)}
    for case in range(n):
        # A T1Gd lesion of a few 1.5 mm voxels can vanish on the 3 mm grid (the pipeline refuses such a
        # patient): such a case has no shape to learn from; its row stays NaN and is left out of training.
        if not (labels[case] == 2).any():
            continue
        lesion = network_lesion(labels[case], inputs.config)
        out["features"][case] = lesion_descriptors.features(inputs.feature_names, lesion)
        out["vectors"][case] = lesion_descriptors.vectors(inputs.vector_names, lesion)
        out["offsets"][case] = (targets[case, 2:5] - lesion.core_centre()) * lesion.spacing_mm
    return out


def split_features(data_dir: Path, split: str, limit: int, shard_size: int, inputs: Inputs, workers: int) -> dict:
    """:func:`_features_of_shard`'s arrays for the split's first ``limit`` cases; cached in ``data_dir`` (the
    cache remembers the input names)."""
    cache = data_dir / f"shape_features_{inputs.source}_{split}.npz"
    keys = ("features", "mu", "vectors", "offsets")
    if cache.exists():
        with np.load(cache) as saved:
            if (tuple(saved["names"]) == inputs.feature_names and "vector_names" in saved.files
                    and tuple(saved["vector_names"]) == inputs.vector_names and len(saved["features"]) >= limit):
                return {key: saved[key][:limit] for key in keys}
    paths = dataset.shard_paths(data_dir, split)
    paths = paths[:-(-limit // shard_size)]
    from tqdm import tqdm

    with ProcessPoolExecutor(workers) as pool:
        n = len(paths)
        parts = list(tqdm(pool.map(_features_of_shard, paths, [split] * n, range(n), [inputs] * n),
                          total=len(paths), desc=f"shape features ({split})", unit="shard", file=sys.stderr))
    out = {key: np.concatenate([part[key] for part in parts])[:limit] for key in keys}
    if len(out["mu"]) < limit:
        raise InputError(f"{data_dir} holds {len(out['mu'])} {split} cases, the config asks for {limit}: make the "
                         "missing shards with Scripts/lmi_make_dataset.py")
    with atomic_path(cache, ".npz") as tmp:
        np.savez(tmp, **out, names=np.array(inputs.feature_names), vector_names=np.array(inputs.vector_names))
    return out


def _save(model, summary: dict, config: dict, out: Path, weights_name: str, log_name: str, **names) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / weights_name, ".pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "config": config, **names, "summary": summary}, tmp)
    with atomic_path(out / log_name, ".json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (train_*.npz, val_*.npz)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the weights and their logs")
    parser.add_argument("--config", type=Path, help="LMI config (default Resources/LMI/config.json)")
    parser.add_argument("--workers", type=int, default=available_cpus())
    args = parser.parse_args(argv)
    config = load_config(args.config)
    dataset.check_manifest(args.data, config)
    start = time.perf_counter()
    settings = config.get("shape_regressor", DEFAULT_SETTINGS)
    source = settings.get("labels", "dataset")
    if source not in LABEL_SOURCES:
        raise InputError(f"config: shape_regressor.labels must be one of {LABEL_SOURCES}, got {source!r}")
    inputs = Inputs(source, FEATURE_NAMES, VECTOR_NAMES, config)
    shard_size = int(config["dataset"]["shard_size"])
    cases = {split: split_features(args.data, split, int(config["dataset"]["cases"][split]), shard_size, inputs,
                                   args.workers)
             for split in ("train", "val")}
    # A T1Gd lesion of a few 1.5 mm voxels can vanish on the 3 mm grid: such a case (NaN row) is left out.
    dropped = {}
    for split, arrays in cases.items():
        keep = np.all(np.isfinite(arrays["features"]), axis=1)
        dropped[split] = int(np.count_nonzero(~keep))
        cases[split] = {key: value[keep] for key, value in arrays.items()}
    features_s = time.perf_counter() - start
    model, summary = fit(settings, cases["train"]["features"], cases["train"]["mu"], cases["val"]["features"],
                         cases["val"]["mu"])
    summary.update(labels=source, cases_without_t1gd_on_the_network_grid=dropped)
    summary.update(features_seconds=round(features_s, 1),
                   training_seconds=round(time.perf_counter() - start - features_s, 1))
    _save(model, summary, config, args.out, WEIGHTS_NAME, LOG_NAME, feature_names=list(inputs.feature_names))
    print(json.dumps(summary["val_median_abs_log_error"]))
    if "seed_regressor" in config:
        seed_start = time.perf_counter()
        seed_model, seed_summary = fit_seed(
            config["seed_regressor"], *([cases[split][key] for key in ("features", "vectors", "offsets")]
                                        for split in ("train", "val")))
        seed_summary.update(labels=source, cases_without_t1gd_on_the_network_grid=dropped,
                            training_seconds=round(time.perf_counter() - seed_start, 1))
        _save(seed_model, seed_summary, config, args.out, SEED_WEIGHTS_NAME, SEED_LOG_NAME,
              feature_names=list(inputs.feature_names), vector_names=list(inputs.vector_names))
        print(json.dumps(seed_summary["val_seed_error_mm"]))
    return 0


if __name__ == "__main__":
    run_script(main)
