"""Grow the LMI training and validation cases again on the atlas' 1.5 mm grid, as a patient's masks arrive.

For each dataset shard ``{split}_NNNNN.npz`` this writes ``atlas_labels_{split}_NNNNN.npz``: the labels of the
same cases regrown from their parameters at the atlas' resolution and taken onto the network grid (see
``TumorPersonalizationLib/lmi/training/atlas_growth.py`` for why). ``Scripts/lmi_train_shape.py`` trains the shape
regressors on them when the config's ``shape_regressor.labels`` is ``"atlas"``. About 0.26 s per case on one core (the
14,800 + 400 cases in ~35 min on 2 cores); parallel and resumable (each file is written whole when its shard is
done; a new run makes only the missing ones).

Usage::

    python Scripts/lmi_grow_atlas.py --data lmi_data [--splits train val] [--workers N] [--config C]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import InputError, run_script  # noqa: E402
from TumorPersonalizationLib.execution import available_cpus, process_pool  # noqa: E402
from TumorPersonalizationLib.files import atomic_path  # noqa: E402
from TumorPersonalizationLib.lmi.config import load_config  # noqa: E402
from TumorPersonalizationLib.lmi.training import dataset  # noqa: E402
from TumorPersonalizationLib.lmi.training.atlas_growth import atlas_grids, grow_on_atlas, labels_path  # noqa: E402

_GRIDS = None


def _install(config):
    global _GRIDS
    _GRIDS = atlas_grids(config)


def _grow_shard(shard: Path, out: Path) -> int:
    try:
        with np.load(shard) as data:
            parameters = data["parameters"]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"dataset shard {shard}: cannot read it ({error})") from error
    lesions = [grow_on_atlas(_GRIDS, p, parallel=False)[1] for p in parameters]
    with atomic_path(out, ".npz") as tmp:
        np.savez_compressed(tmp, labels=np.stack([network.labels for network in lesions]))
    return len(lesions)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (made by lmi_make_dataset.py)")
    parser.add_argument("--config", type=Path, help="LMI config (default Resources/LMI/config.json)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=dataset.SPLITS)
    parser.add_argument("--workers", type=int, default=available_cpus())
    args = parser.parse_args(argv)
    config = load_config(args.config)
    dataset.check_manifest(args.data, config)
    size = int(config["dataset"]["shard_size"])
    todo = []
    for split in args.splits:
        n_shards = -(-int(config["dataset"]["cases"][split]) // size)
        paths = dataset.shard_paths(args.data, split)
        if len(paths) < n_shards:
            raise InputError(f"{args.data} holds {len(paths)} {split} shards, the config asks for {n_shards}: make "
                             "them with Scripts/lmi_make_dataset.py")
        todo += [(path, labels_path(args.data, split, i)) for i, path in enumerate(paths[:n_shards])
                 if not labels_path(args.data, split, i).exists()]
    print(f"{len(todo)} shards to grow on the atlas grid in {args.data} with {args.workers} workers", flush=True)
    if not todo:
        return 0
    from tqdm import tqdm

    start, cases = time.perf_counter(), 0
    os.environ["NUMBA_NUM_THREADS"] = "1"  # one simulation per process; the pool provides the parallelism
    with process_pool(args.workers, _install, (config,)) as pool:
        futures = [pool.submit(_grow_shard, shard, out) for shard, out in todo]
        for future in tqdm(as_completed(futures), total=len(futures), unit="shard", file=sys.stderr):
            cases += future.result()
    seconds = time.perf_counter() - start
    print(f"grew {cases} cases in {seconds:.0f} s ({seconds / max(cases, 1) * args.workers:.2f} s per case per "
          "worker)", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
