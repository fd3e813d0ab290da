"""Make the Learn-Morph-Infer training, validation and test sets: simulations in the atlas (lmi/training/dataset.py).

The config decides the forward model: ``Resources/LMI/config.json`` Fisher-Kolmogorov,
``Resources/LMI/mass_effect/config.json`` the mass-effect model.

Parallel (one process per core by default) and resumable: each shard is written atomically when complete, and a
new run makes only the shards that are missing. The config fixes every random draw, so the same config gives the
same shards on any machine (up to floating-point differences between CPUs).

Usage::

    python Scripts/lmi_make_dataset.py --out lmi_data [--splits train val test] [--workers N | --scheduler ADDR]
        [--config C]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.execution import (available_cpus, install_dataset, make_dataset_shard,  # noqa: E402
                                               task_pool)
from TumorPersonalizationLib.lmi import config as lmi_config  # noqa: E402
from TumorPersonalizationLib.lmi.training import dataset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (created; existing shards kept)")
    parser.add_argument("--config", type=Path, help="LMI config (default Resources/LMI/config.json)")
    parser.add_argument("--splits", nargs="+", default=list(dataset.SPLITS), choices=dataset.SPLITS)
    parser.add_argument("--workers", type=int, default=available_cpus())
    parser.add_argument("--scheduler", help="make the shards on a Dask cluster (tcp://host:8786); --out must be on "
                                            "a file system its workers share")
    args = parser.parse_args(argv)

    config = lmi_config.load_config(args.config)
    tissue = lmi_config.network_tissue(config)
    size = int(config["dataset"]["shard_size"])
    todo = []
    for split in args.splits:
        n_shards = -(-int(config["dataset"]["cases"][split]) // size)
        todo += [(split, i) for i in range(n_shards) if not dataset.shard_path(args.out, split, i).exists()]
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.check_manifest(args.out, config, create=True)  # new shards must not join ones made differently
    dataset.write_tissue(args.out, tissue.wm.array, tissue.gm.array)
    where = f"the Dask cluster at {args.scheduler}" if args.scheduler else f"{args.workers} workers"
    print(f"{len(todo)} shards of {size} cases to make in {args.out} with {where}", flush=True)
    if not todo:
        return 0
    from tqdm import tqdm

    start = time.perf_counter()
    initargs = (dataset.__name__, tissue.wm.array, tissue.gm.array, tissue.csf.array, tissue.wm.geometry.spacing_mm)
    drawn = 0
    with task_pool(args.workers, args.scheduler, install_dataset, initargs) as (submit, completed):
        futures = [submit(make_dataset_shard, config, split, i, args.out.resolve()) for split, i in todo]
        for future in tqdm(completed(futures), total=len(futures), unit="shard", file=sys.stderr):
            drawn += future.result()["drawn"]
    seconds = time.perf_counter() - start
    made = len(todo) * size
    print(f"made {made} cases ({drawn} simulated, {made / max(drawn, 1):.0%} accepted) in {seconds:.0f} s: "
          f"{drawn / seconds:.1f} simulations/s", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
