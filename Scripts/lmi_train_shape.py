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
``shape_regressor.feature_grids`` (default ``["network"]``) says on which grids the shape features are read, the
network's 3 mm grid and / or the atlas' 1.5 mm grid, and ``seed_regressor.vector_grid`` (default ``"network"``)
where the seed vectors are (:mod:`TumorPersonalizationLib.lmi.lesion_descriptors`; the atlas grid needs the
``"atlas"`` labels).

With ``shape_regressor.augment`` (``fields``, ``smoothness_mm``, ``amplitude_mm`` = [low, high], ``seed``), a
copy of every training case warped by a random smooth displacement (:mod:`TumorPersonalizationLib.lmi.label_warp`)
joins the mu regressor's training set: the misalignment a registration leaves between a patient's lesion and the
atlas' tissue. The seed regressor trains on the cases as they are (the seed of a warped case is not defined).

The shape features and seed vectors of every training and validation case are computed first (one process per
core, ~35 ms per case on the network grid, ~0.1 s more on the atlas grid) and kept in the dataset folder
(``shape_features_{labels}_{split}.npz``), so a second run only trains (seconds to a minute).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import InputError, run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus  # noqa: E402
from TumorPersonalizationLib.files import atomic_path  # noqa: E402
from TumorPersonalizationLib.lmi import atlas_growth, dataset, label_warp  # noqa: E402
from TumorPersonalizationLib.lmi.config import load_config  # noqa: E402
from TumorPersonalizationLib.lmi import lesion_descriptors  # noqa: E402
from TumorPersonalizationLib.lmi.lesion_descriptors import feature_names, vector_names  # noqa: E402
from TumorPersonalizationLib.lmi.pipeline import lesion_on_atlas_grid, lesion_on_network_grid  # noqa: E402
from TumorPersonalizationLib.lmi.shape_regressor import (DEFAULT_SETTINGS, SEED_WEIGHTS_NAME,  # noqa: E402
                                                         WEIGHTS_NAME, fit, fit_seed)

LOG_NAME = "shape_regressor_log.json"
SEED_LOG_NAME = "seed_regressor_log.json"
LABEL_SOURCES = ("dataset", "atlas")


@functools.lru_cache(maxsize=1)
def _bank(shape: tuple, count: int, smoothness_mm: float, spacing_mm: float, seed: int) -> np.ndarray:
    """One bank of displacement fields per worker process."""
    return label_warp.displacement_bank(shape, count, smoothness_mm, spacing_mm, seed)


@dataclass(frozen=True)
class Inputs:
    """What the regressors read: from which masks (``source``, one of :data:`LABEL_SOURCES`), the shape features
    and seed vectors by name (:mod:`TumorPersonalizationLib.lmi.lesion_descriptors`), the config they are for and
    the random warps of ``augment`` (the config's ``shape_regressor.augment``; None: the cases as they are)."""
    source: str
    feature_names: tuple
    vector_names: tuple
    config: dict
    augment: dict | None = None


def _features_of_shard(path: Path, split: str, index: int, inputs: Inputs) -> dict:
    """One shard's (``index``: its number in the split) cases: (cases, F) shape ``features``, (cases, 2) ``mu``
    (mu1, mu2), (cases, V, 3) seed ``vectors`` and (cases, 3) ``offsets``, the true seed minus the core's centroid
    (mm, on the grid the vectors are read from); with ``inputs.augment``, of its cases randomly warped
    (:mod:`label_warp`; no vectors and offsets then)."""
    try:
        with np.load(path) as shard:
            labels, targets = shard["labels"], shard["targets"].astype(np.float64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise InputError(f"dataset shard {path}: cannot read it ({error})") from error
    atlas_labels = None
    if inputs.source == "atlas":
        labels, atlas_labels = atlas_growth.load_labels(path.parent, split, index, len(labels))
    config, augment = inputs.config, inputs.augment
    if augment is not None:
        bank = _bank(labels.shape[1:], int(augment["fields"]), float(augment["smoothness_mm"]),
                     float(config["grid"]["spacing_mm"]), int(augment["seed"]))
        rng = np.random.default_rng([int(augment["seed"]), index])
        labels = np.stack([label_warp.warp_randomly(case, bank, tuple(augment["amplitude_mm"]), rng)
                           for case in labels])
    n = len(labels)
    out = {"features": np.full((n, len(inputs.feature_names)), np.nan), "mu": targets[:, :2],
           "vectors": np.full((n, len(inputs.vector_names), 3), np.nan), "offsets": np.full((n, 3), np.nan)}
    for case in range(n):
        # A T1Gd lesion of a few 1.5 mm voxels can vanish on the 3 mm grid (the pipeline refuses such a
        # patient): such a case has no shape to learn from; its row stays NaN and is left out of training.
        if not (labels[case] == 2).any():
            continue
        network = lesion_on_network_grid(labels[case], config)
        on_atlas = None if atlas_labels is None else lesion_on_atlas_grid(atlas_labels[case])
        out["features"][case] = lesion_descriptors.features(inputs.feature_names, network, on_atlas)
        if augment is None:
            out["vectors"][case], grid = lesion_descriptors.vectors(inputs.vector_names, network, on_atlas)
            lesion = network if grid == "network" else on_atlas
            seed = lesion.geometry.ras_to_index(network.geometry.index_to_ras(targets[case, 2:5]))
            out["offsets"][case] = (seed - lesion.core_centre()) * lesion.spacing_mm
    return out


def split_features(data_dir: Path, split: str, limit: int, shard_size: int, inputs: Inputs, workers: int) -> dict:
    """:func:`_features_of_shard`'s arrays for the split's first ``limit`` cases; cached in ``data_dir`` (the
    cache remembers the input names and a warped one its settings)."""
    settings = json.dumps(inputs.augment, sort_keys=True) if inputs.augment is not None else ""
    cache = data_dir / f"shape_features_{inputs.source}_{split}{'_warped' if inputs.augment is not None else ''}.npz"
    keys = ("features", "mu", "vectors", "offsets")
    if cache.exists():
        with np.load(cache) as saved:
            if (tuple(saved["names"]) == inputs.feature_names and "vector_names" in saved.files
                    and tuple(saved["vector_names"]) == inputs.vector_names and len(saved["features"]) >= limit
                    and str(saved.get("augment", "")) == settings):
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
        np.savez(tmp, **out, names=np.array(inputs.feature_names), vector_names=np.array(inputs.vector_names),
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
    start = time.perf_counter()
    settings = config.get("shape_regressor", DEFAULT_SETTINGS)
    source = settings.get("labels", "dataset")
    if source not in LABEL_SOURCES:
        raise InputError(f"config: shape_regressor.labels must be one of {LABEL_SOURCES}, got {source!r}")
    grids = settings.get("feature_grids", ["network"])
    vector_grid = config.get("seed_regressor", {}).get("vector_grid", "network")
    if "atlas" in [*grids, vector_grid] and source != "atlas":
        raise InputError("config: features or vectors on the atlas grid need shape_regressor.labels \"atlas\"")
    inputs = Inputs(source, feature_names(grids), vector_names(vector_grid), config)
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
    train_features, train_mu = cases["train"]["features"], cases["train"]["mu"]
    augment = settings.get("augment")
    if augment is not None:  # warped copies of the training cases join the clean ones
        if "atlas" in grids:
            raise InputError("config: shape_regressor.augment warps the network-grid masks only; it cannot go "
                             "with feature_grids on the atlas grid")
        warped = split_features(args.data, "train", int(config["dataset"]["cases"]["train"]), shard_size,
                                replace(inputs, augment=augment), args.workers)
        keep = np.all(np.isfinite(warped["features"]), axis=1)
        train_features = np.concatenate([train_features, warped["features"][keep]])
        train_mu = np.concatenate([train_mu, warped["mu"][keep]])
    features_s = time.perf_counter() - start
    model, summary = fit(settings, train_features, train_mu, cases["val"]["features"], cases["val"]["mu"])
    summary.update(labels=source, augment=augment, cases_without_t1gd_on_the_network_grid=dropped)
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
