"""Train NPE's amortised first round on the shards of Scripts/npe_make_dataset.py and write its weights.

Usage::

    python Scripts/npe_train.py --data npe_data [--config Resources/NPE/config.json]
        [--out Resources/NPE/npe.pt] [--train-limit N] [--val-cases 100]

The weights carry the config (observation crop, network) and the prior box they were trained on; the method
``npe`` loads them with ``torch.load(weights_only=True)`` and uses them for round 1 of every patient without PET.
A training log (losses per epoch, validation coverage) is written beside them as ``training_log.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.npe.config import default_weights, load_config  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (Scripts/npe_make_dataset.py)")
    parser.add_argument("--config", type=Path, help="NPE config (default Resources/NPE/config.json)")
    parser.add_argument("--out", type=Path, default=default_weights(), help="weights file to write")
    parser.add_argument("--train-limit", type=int, help="train on the first N cases only (trials)")
    parser.add_argument("--val-cases", type=int, default=100, help="validation cases for the coverage check")
    args = parser.parse_args(argv)

    from TumorPersonalizationLib.npe.training.train import train_amortised, write_log

    record = train_amortised(load_config(args.config), args.data, args.out, train_limit=args.train_limit,
                             val_cases=args.val_cases, log=lambda text: print(text, flush=True))
    write_log(record, args.out.with_name("training_log.json"))
    return 0


if __name__ == "__main__":
    run_script(main)
