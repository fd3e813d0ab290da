"""Refined targets for amortising the refinement: the shard round trip, resuming, and training reading them."""
import numpy as np
import pytest

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.lmi import dataset
from TumorPersonalizationLib.lmi.amortisation import RefineShards
from TumorPersonalizationLib.lmi.config import load_config
from TumorPersonalizationLib.lmi.parameters import from_time_independent
from TumorPersonalizationLib.lmi.refinement import mask_fit
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain

SHAPE, SPACING_MM = (28, 28, 28), 3.0


def _tissue():
    """WM in one half of the cube, GM in the other, a CSF-like shell outside a ball."""
    i = np.indices(SHAPE)
    inside = np.linalg.norm(i - 13.5, axis=0) < 13
    wm = np.where(inside & (i[0] < 14), 0.9, 0.0).astype(np.float32)
    gm = np.where(inside & (i[0] >= 14), 0.9, 0.0).astype(np.float32)
    return wm, gm


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three simulated cases imaged at known levels, one shard of train and one of val."""
    folder = tmp_path_factory.mktemp("lmi_refine")
    wm, gm = _tissue()
    domain = Domain(wm, gm, (SPACING_MM,) * 3)
    cases = [(6.0, 3.0, (11.0, 13.0, 14.0), 0.7, 0.2), (9.0, 2.5, (16.0, 12.0, 13.0), 0.6, 0.1),
             (4.0, 3.5, (13.0, 15.0, 12.0), 0.8, 0.3)]
    labels, targets = [], []
    for mu1, mu2, seed, uc_t1gd, uc_flair in cases:
        density = domain.simulate(*(float(v) for v in from_time_independent(mu1, mu2)), np.array(seed))
        labels.append(dataset.image_case(density, uc_t1gd, uc_flair))
        targets.append([mu1, mu2, *seed])
    shard = {"labels": np.array(labels), "targets": np.array(targets, np.float32),
             "parameters": np.zeros((len(cases), 8)), "drawn": np.int64(len(cases))}
    for split in ("train", "val"):
        dataset.write_shard(shard, dataset.shard_path(folder, split, 0))
    dataset.write_tissue(folder, wm, gm)
    return folder, domain, shard


def config():
    c = load_config()
    return {**c, "grid": {**c["grid"], "spacing_mm": SPACING_MM}}


def test_refined_targets_fit_the_masks_at_least_as_well_and_training_can_read_them(data):
    folder, domain, shard = data
    with pytest.raises(InputError, match="refined_train_00000.npz is missing"):
        dataset.load_split(folder, "train", targets="refined")
    rows = RefineShards(folder, "train", config(), max_evaluations=25)([0])
    assert rows.shape == (1, 4) and rows[0, 0] == 3 and rows[0, 3] <= 25
    refined = dataset.load_split(folder, "train", targets="refined")
    true = dataset.load_split(folder, "train")
    assert np.array_equal(refined["labels"], true["labels"]) and refined["targets"].shape == (3, 5)
    # Judged by simulating the stored (float32) targets again, not by the numbers the search reported.
    for case, before, after in zip(shard["labels"], true["targets"], refined["targets"]):
        fits = [mask_fit(domain.simulate(*(float(v) for v in from_time_independent(t[0], t[1])), t[2:],
                                         parallel=False), case == 2, case > 0, domain.inside).objective
                for t in (before, after)]
        assert fits[1] <= fits[0] + 1e-5, fits
    # A second run leaves the finished shard alone.
    written = dataset.refined_path(folder, "train", 0).read_bytes()
    assert np.isnan(RefineShards(folder, "train", config(), max_evaluations=25)([0])).all()
    assert dataset.refined_path(folder, "train", 0).read_bytes() == written
    with pytest.raises(InputError, match="targets must be one of"):
        dataset.load_split(folder, "train", targets="posterior")


def test_the_script_refines_the_splits_and_names_a_folder_without_shards(data, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "Scripts" / "lmi_refine_dataset.py"
    spec = importlib.util.spec_from_file_location("lmi_refine_dataset", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder, _, _ = data
    config_path = tmp_path / "config.json"
    import json
    config_path.write_text(json.dumps(config()))
    assert script.main(["--data", str(folder), "--splits", "val", "--workers", "1", "--evaluations", "10",
                        "--config", str(config_path)]) == 0
    assert dataset.load_split(folder, "val", targets="refined")["targets"].shape == (3, 5)
    assert "val: refined 3 cases" in capsys.readouterr().out
    # Going on with another simulation budget would mix two searches in one dataset.
    with pytest.raises(InputError, match="refined with 10 simulations per case, this run allows 12"):
        script.main(["--data", str(folder), "--splits", "val", "--workers", "1", "--evaluations", "12",
                     "--config", str(config_path)])
    with pytest.raises(InputError, match="refined with 10 simulations"):
        RefineShards(folder, "val", config(), max_evaluations=12)([0])
    with pytest.raises(InputError, match="no train shards"):
        script.main(["--data", str(tmp_path), "--splits", "train", "--workers", "1"])
    # A gap in the shards is named before any work starts (it used to fail inside a worker).
    gapped = tmp_path / "gapped"
    gapped.mkdir()
    for index in (0, 2):
        dataset.shard_path(gapped, "train", index).write_bytes(dataset.shard_path(folder, "train", 0).read_bytes())
    with pytest.raises(InputError, match="train_00001.npz is missing"):
        script.main(["--data", str(gapped), "--splits", "train", "--workers", "1"])
    # With --shards, only the shards to refine must be there (the dataset maker may still be filling the gap).
    for name in ("tissue.npz", "dataset.json"):
        if (folder / name).exists():
            (gapped / name).write_bytes((folder / name).read_bytes())
    assert script.main(["--data", str(gapped), "--splits", "train", "--shards", "1", "--workers", "1",
                        "--evaluations", "8", "--config", str(config_path)]) == 0
    assert dataset.refined_path(gapped, "train", 0).exists() and not dataset.refined_path(gapped, "train", 2).exists()
