"""The dataset scripts on a Dask cluster: the shards they make there are the shards the local pool makes."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = {"observation": {"crop_size": 16, "crop_spacing_mm": 3.0},
        "embedding": {"channels": [4, 8], "features": 16},
        "mdn": {"components": 2, "hidden_features": 24},
        "training": {"batch_size": 8, "learning_rate": 0.001, "validation_fraction": 0.2, "stop_after_epochs": 2,
                     "max_epochs": 2, "seed": 0},
        "dataset": {"seed": 5, "shard_size": 2, "cases": {"train": 4, "val": 2, "test": 2},
                    "simulation": {"spacing_mm": 3.0, "ratio": 10.0, "box_mm": 45.0},
                    "ranges": {"mu1": [3.0, 8.0], "mu2": [1.5, 4.0], "seed_offset_mm": 15.0,
                               "uc_T1Gd": [0.6, 0.8], "uc_FLAIR": [0.05, 0.6]},
                    "acceptance": {"t1gd_min_ml": 0.01, "flair_max_fraction_of_box": 0.9},
                    "sampling": {"seed_min_wm_plus_gm": 0.5}},
        "anatomies": {"train": ["mni"], "val": ["mni"], "test": ["sri24"]},
        "deformation": {"amplitude_mm": [0.0, 2.0], "smoothness_mm": 20.0}}


def test_npe_dataset_script_makes_the_same_shards_on_a_dask_cluster(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.syspath_prepend(str(ROOT / "Scripts"))
    import npe_make_dataset
    from surrogate_anatomies import load_simulation_maps

    from TumorPersonalizationLib.npe.training import dataset

    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        argv = ["--out", str(tmp_path / "data"), "--config", str(config), "--splits", "train",
                "--scheduler", cluster.scheduler_address]
        assert npe_make_dataset.main(argv) == 0
    made = [dataset.read_shard(dataset.shard_path(tmp_path / "data", "train", i)) for i in range(2)]
    # The same draws made here, without a cluster: the config fixes every random number.
    base = load_simulation_maps(["mni"], 3.0)
    for index, shard in enumerate(made):
        local = dataset.make_shard(base, TINY, "train", index)
        np.testing.assert_array_equal(shard["theta"], local["theta"])
        np.testing.assert_array_equal(shard["x"], local["x"])
    # A rerun finds nothing to do (resumable), without a cluster.
    assert npe_make_dataset.main(argv[:-2] + ["--workers", "1"]) == 0
    assert len(list((tmp_path / "data").glob("train_*.npz"))) == 2
    sys.modules.pop("npe_make_dataset", None)
