"""Train the Learn-Morph-Infer shape regressors (mu1, mu2 and the seed from the lesion's shape) from the config.

The shipped ``Resources/LMI/shape_regressor.pt`` and ``shape_regressor_log.json`` (mu1, mu2), and
``seed_regressor.pt`` and ``seed_regressor_log.json`` (the seed; made when the config has a ``seed_regressor``
section) are this script's output for ``Resources/LMI/config.json`` on the dataset made by
``Scripts/lmi_make_dataset.py``::

    python Scripts/lmi_make_dataset.py --out lmi_data
    python Scripts/lmi_train_shape.py --data lmi_data --out Resources/LMI [--workers N]

The config's ``shape_regressor.labels`` says which masks the features are read from: ``"dataset"``, the stored
labels of the 3 mm simulations, or ``"atlas"`` (shipped), the same cases regrown on the atlas' 1.5 mm grid as a
patient's masks arrive (made first by ``Scripts/lmi_grow_atlas.py --data lmi_data``, ~35 min on 2 cores).

With ``shape_regressor.augment`` (``fields``, ``smoothness_mm``, ``amplitude_mm`` = [low, high], ``seed``), a
copy of every training case warped by a random smooth displacement (:mod:`TumorPersonalizationLib.lmi.label_warp`)
joins the mu regressor's training set: the misalignment a registration leaves between a patient's lesion and the
atlas' tissue. The seed regressor trains on the cases as they are (the seed of a warped case is not defined).

The shape features and seed vectors of every training and validation case are computed first (one process per
core, ~35 ms per case) and kept in the dataset folder (``shape_features_{labels}_{split}.npz``), so a second run
only trains (seconds to a minute).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import InputError, run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus  # noqa: E402
from TumorPersonalizationLib.files import atomic_path  # noqa: E402
from TumorPersonalizationLib.lmi import atlas_growth, dataset, label_warp  # noqa: E402
from TumorPersonalizationLib.lmi.config import load_config  # noqa: E402
from TumorPersonalizationLib.lmi.seed_features import VECTOR_NAMES, seed_vectors  # noqa: E402
from TumorPersonalizationLib.lmi.shape_features import FEATURE_NAMES, shape_features  # noqa: E402
from TumorPersonalizationLib.lmi.shape_regressor import (DEFAULT_SETTINGS, SEED_WEIGHTS_NAME,  # noqa: E402
                                                         WEIGHTS_NAME, fit, fit_seed)

LOG_NAME = "shape_regressor_log.json"
SEED_LOG_NAME = "seed_regressor_log.json"
LABEL_SOURCES = ("dataset", "atlas")


@functools.lru_cache(maxsize=1)
def _bank(shape: tuple, count: int, smoothness_mm: float, spacing_mm: float, seed: int) -> np.ndarray:
    """One bank of displacement fields per worker process."""
    return label_warp.displacement_bank(shape, count, smoothness_mm, spacing_mm, seed)


def _features_of_shard(path: Path, split: str, index: int, source: str, tissue: np.ndarray,
                       spacing_mm: float, augment: dict | None = None) -> dict:
    """One shard's (``index``: its number in the split) cases: (cases, F) shape ``features``, (cases, 2) ``mu``
    (mu1, mu2), (cases, V, 3) seed ``vectors`` and (cases, 3) ``offsets``, the true seed minus the core's centroid
    (mm); with ``augment`` (the config's ``shape_regressor.augment``), of its cases randomly warped
    (:mod:`label_warp`; no vectors and offsets then)."""
    try:
        with np.load(path) as shard:
            labels, targets = shard["labels"], shard["targets"].astype(np.float64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise InputError(f"dataset shard {path}: cannot read it ({error})") from error
    if source == "atlas":
        labels = atlas_growth.load_labels(path.parent, split, index, len(labels))
    if augment is not None:
        bank = _bank(labels.shape[1:], int(augment["fields"]), float(augment["smoothness_mm"]), spacing_mm,
                     int(augment["seed"]))
        rng = np.random.default_rng([int(augment["seed"]), index])
        labels = np.stack([label_warp.warp_randomly(case, bank, tuple(augment["amplitude_mm"]), rng)
                           for case in labels])
    # A T1Gd lesion of a few 1.5 mm voxels can vanish on the 3 mm grid (the pipeline refuses such a patient):
    # such a case has no shape to learn from; its row stays NaN and is left out of training.
    has_core = (labels == 2).reshape(len(labels), -1).any(axis=1)
    n = len(labels)
    out = {"features": np.full((n, len(FEATURE_NAMES)), np.nan), "mu": targets[:, :2],
           "vectors": np.full((n, len(VECTOR_NAMES), 3), np.nan), "offsets": np.full((n, 3), np.nan)}
    out["features"][has_core] = shape_features(labels[has_core], tissue, spacing_mm)
    if augment is None:
        out["vectors"][has_core] = seed_vectors(labels[has_core], tissue, spacing_mm)
        out["offsets"][has_core] = (targets[has_core, 2:5] - dataset.lesion_centres(labels[has_core])) * spacing_mm
    return out


def split_features(data_dir: Path, split: str, source: str, limit: int, shard_size: int, tissue: np.ndarray,
                   spacing_mm: float, workers: int, augment: dict | None = None) -> dict:
    """:func:`_features_of_shard`'s arrays for the split's first ``limit`` cases, from the labels ``source``
    (:data:`LABEL_SOURCES`), randomly warped with ``augment``; cached in ``data_dir`` (a warped cache remembers
    its settings)."""
    settings = json.dumps(augment, sort_keys=True) if augment is not None else ""
    cache = data_dir / f"shape_features_{source}_{split}{'_warped' if augment is not None else ''}.npz"
    keys = ("features", "mu", "vectors", "offsets")
    if cache.exists():
        with np.load(cache) as saved:
            if (tuple(saved["names"]) == FEATURE_NAMES and "vector_names" in saved.files
                    and tuple(saved["vector_names"]) == VECTOR_NAMES and len(saved["features"]) >= limit
                    and str(saved.get("augment", "")) == settings):
                return {key: saved[key][:limit] for key in keys}
    paths = dataset.shard_paths(data_dir, split)
    paths = paths[:-(-limit // shard_size)]
    from tqdm import tqdm

    with ProcessPoolExecutor(workers) as pool:
        n = len(paths)
        parts = list(tqdm(pool.map(_features_of_shard, paths, [split] * n, range(n), [source] * n, [tissue] * n,
                                   [spacing_mm] * n, [augment] * n),
                          total=len(paths), desc=f"shape features ({split})", unit="shard", file=sys.stderr))
    out = {key: np.concatenate([part[key] for part in parts])[:limit] for key in keys}
    if len(out["mu"]) < limit:
        raise InputError(f"{data_dir} holds {len(out['mu'])} {split} cases, the config asks for {limit}: make the "
                         "missing shards with Scripts/lmi_make_dataset.py")
    with atomic_path(cache, ".npz") as tmp:
        np.savez(tmp, **out, names=np.array(FEATURE_NAMES), vector_names=np.array(VECTOR_NAMES),
                 augment=np.array(settings))
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
    tissue = dataset.load_tissue(args.data)
    spacing = float(config["grid"]["spacing_mm"])
    start = time.perf_counter()
    settings = config.get("shape_regressor", DEFAULT_SETTINGS)
    source = settings.get("labels", "dataset")
    if source not in LABEL_SOURCES:
        raise InputError(f"config: shape_regressor.labels must be one of {LABEL_SOURCES}, got {source!r}")
    shard_size = int(config["dataset"]["shard_size"])
    cases = {split: split_features(args.data, split, source, int(config["dataset"]["cases"][split]), shard_size,
                                   tissue, spacing, args.workers)
             for split in ("train", "val")}
    # A T1Gd lesion of a few 1.5 mm voxels can vanish on the 3 mm grid: such a case (NaN row) is left out.
    dropped = {}
    for split, arrays in cases.items():
        keep = np.all(np.isfinite(arrays["features"]), axis=1)
        dropped[split] = int(np.count_nonzero(~keep))
        cases[split] = {key: value[keep] for key, value in arrays.items()}
    train_features, train_mu = cases["train"]["features"], cases["train"]["mu"]
    augment = settings.get("augment")
    if augment is not None:  # warped copies of the training cases join the clean ones
        warped = split_features(args.data, "train", source, int(config["dataset"]["cases"]["train"]), shard_size,
                                tissue, spacing, args.workers, augment)
        keep = np.all(np.isfinite(warped["features"]), axis=1)
        train_features = np.concatenate([train_features, warped["features"][keep]])
        train_mu = np.concatenate([train_mu, warped["mu"][keep]])
    features_s = time.perf_counter() - start
    model, summary = fit(settings, train_features, train_mu, cases["val"]["features"], cases["val"]["mu"])
    summary.update(labels=source, augment=augment, cases_without_t1gd_on_the_network_grid=dropped)
    summary.update(features_seconds=round(features_s, 1),
                   training_seconds=round(time.perf_counter() - start - features_s, 1))
    _save(model, summary, config, args.out, WEIGHTS_NAME, LOG_NAME, feature_names=list(FEATURE_NAMES))
    print(json.dumps(summary["val_median_abs_log_error"]))
    if "seed_regressor" in config:
        seed_start = time.perf_counter()
        seed_model, seed_summary = fit_seed(
            config["seed_regressor"], *([cases[split][key] for key in ("features", "vectors", "offsets")]
                                        for split in ("train", "val")))
        seed_summary.update(labels=source, cases_without_t1gd_on_the_network_grid=dropped,
                            training_seconds=round(time.perf_counter() - seed_start, 1))
        _save(seed_model, seed_summary, config, args.out, SEED_WEIGHTS_NAME, SEED_LOG_NAME,
              feature_names=list(FEATURE_NAMES), vector_names=list(VECTOR_NAMES))
        print(json.dumps(seed_summary["val_seed_error_mm"]))
    return 0


if __name__ == "__main__":
    run_script(main)
