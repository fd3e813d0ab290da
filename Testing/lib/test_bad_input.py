"""Corrupted copies of the shipped example patient, given to every command: each is refused before any work with
one line that names the input, exit code 2, no output, and the inputs unchanged on disk."""
import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.imaging.io import nifti_nonfinite_count, read_volume, write_volume
from TumorPersonalizationLib.resources import resources_dir

EXAMPLE = resources_dir() / "ExamplePatient"


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The example patient's files, a float density in [0, 1] and corrupted copies (NIfTI, as users' tools write
    them: ITK's reader would silently turn their NaN into 0)."""
    folder = tmp_path_factory.mktemp("patient")
    files = {name: write_volume(read_volume(EXAMPLE / f"{name}.nii.gz"), folder / f"{name}.nii.gz")
             for name in ("t1", "t1gd", "flair")}
    truth = read_volume(EXAMPLE / "density_truth.nii.gz")
    density = truth.like(truth.array.astype(np.float32) / np.float32(255))
    files["density"] = write_volume(density, folder / "density.nii.gz")
    files["pet"] = write_volume(density, folder / "pet.nii.gz")
    centre = tuple(np.argwhere(density.array > 0.5).mean(axis=0).astype(int))

    def with_nan(name):
        volume = read_volume(files[name])
        array = volume.array.astype(np.float32)
        array[centre] = np.nan
        return write_volume(volume.like(array), folder / f"{name}_nan.nii.gz")

    for name in ("t1", "t1gd", "flair", "density", "pet"):
        files[f"{name}_nan"] = with_nan(name)
    # Tissue maps for ``simulate``: the bundled atlas' (stored as 0-255) as probabilities, and corrupted copies.
    atlas = resources_dir() / "Atlas"
    wm, gm = (read_volume(atlas / f"mni_icbm152_{name}_1.5mm.nii.gz") for name in ("wm", "gm"))
    wm, gm = (v.like((v.array / np.float32(255)).astype(np.float32)) for v in (wm, gm))
    files["wm"] = write_volume(wm, folder / "wm.nii.gz")
    files["gm"] = write_volume(gm, folder / "gm.nii.gz")
    wm_nan = wm.array.copy()
    wm_nan[tuple(s // 2 for s in wm.shape)] = np.nan
    files["wm_nan"] = write_volume(wm.like(wm_nan), folder / "wm_nan.nii.gz")
    files["gm_overfull"] = write_volume(gm.like(np.where(wm.array > 0.5, np.float32(0.8), gm.array)),
                                        folder / "gm_overfull.nii.gz")
    files["density_zero"] = write_volume(density.like(np.zeros(density.shape, np.float32)), folder / "zero.nii.gz")
    files["existing"] = folder / "existing.txt"
    files["existing"].write_text("the user's own file")
    return files


def test_nan_survives_in_the_corrupted_nifti_files(patient):
    # The premise of the NaN rows below: the files hold NaN although SimpleITK reads them as 0.
    assert nifti_nonfinite_count(patient["flair_nan"]) == 1 and nifti_nonfinite_count(patient["flair"]) == 0


LMI = ["personalize", "--method", "lmi", "--t1", "t1", "--t1gd", "t1gd", "--flair", "flair"]
TMCMC = ["personalize", "--method", "tmcmc", "--t1gd", "t1gd", "--flair", "flair", "--pet", "pet", "--fast"]
PLAN = ["plan", "--density", "density", "--core", "t1gd"]
SIMULATE = ["simulate", "--wm", "wm", "--gm", "gm", "--dw", "0.1", "--rho", "0.02", "--days", "100",
            "--seed-mm", "-25", "-10", "20"]


def _with(command, flag, value):
    """``command`` with ``flag``'s value replaced."""
    out = list(command)
    out[out.index(flag) + 1] = value
    return out


@pytest.mark.parametrize("command, swap, message", [
    (LMI, {"t1": "t1_nan"}, "--t1 {t1_nan} holds 1 NaN"),
    (LMI, {"flair": "flair_nan"}, "--flair {flair_nan} holds 1 NaN"),
    (TMCMC, {"t1gd": "t1gd_nan"}, "--t1gd {t1gd_nan} holds 1 NaN"),
    (TMCMC, {"pet": "pet_nan"}, "--pet {pet_nan} holds 1 NaN"),
    (PLAN, {"density": "density_nan"}, "--density: {density_nan} holds 1 NaN"),
    (PLAN, {"t1gd": "t1gd_nan"}, "--core: {t1gd_nan} holds 1 NaN"),
    (PLAN, {"density": "density_zero"}, "the density is zero everywhere"),
    (LMI[:-2], {}, "--method lmi needs --flair: the FLAIR (T2) abnormality segmentation"),
    (TMCMC[:5] + TMCMC[7:], {}, "A T1Gd-only case cannot be personalized"),
    (SIMULATE, {"wm": "wm_nan"}, "--wm: {wm_nan} holds 1 NaN"),
    (SIMULATE, {"gm": "gm_overfull"}, "the tissue probabilities add up to 1.8"),
    (_with(SIMULATE, "--days", "1e9"), {}, "days = 1e+09 is outside (0, 10000]"),
    (_with(SIMULATE, "--dw", "1e6"), {}, "dw_mm2_per_day = 1e+06 is outside (0, 10]"),
    (TMCMC + ["--samples", "1000000000"], {}, "samples (--samples) must be at most 100000"),
])
def test_corrupted_input_is_refused_before_any_work(tmp_path, capsys, patient, command, swap, message):
    argv = [str(patient[swap.get(a, a)]) if a in patient else a for a in command]
    out = tmp_path / ("density.nii.gz" if command[0] == "simulate" else "out")  # simulate writes one file
    before = {path: path.read_bytes() for path in patient.values()}
    assert main(argv + ["--out", str(out)] + (["--quiet"] if command[0] != "plan" else [])) == 2
    err = capsys.readouterr().err
    expected = message.format(**{k: str(v) for k, v in patient.items()})
    assert err.startswith("error: ") and expected in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert {path: path.read_bytes() for path in patient.values()} == before


@pytest.mark.parametrize("command", [LMI, TMCMC, PLAN])
def test_an_existing_file_as_the_output_folder_is_refused(capsys, patient, command):
    argv = [str(patient[a]) if a in patient else a for a in command]
    assert main(argv + ["--out", str(patient["existing"])]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert patient["existing"].read_text() == "the user's own file"
