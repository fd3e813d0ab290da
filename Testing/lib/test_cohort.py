"""Cohorts on Dask: finding patients in each layout, resumability, a broken patient, the summary, a LocalCluster,
a scheduler and a worker started as separate processes, Ctrl-C and resume, and the PREDICT-GBM layout in and out.

The patients are tiny synthetic tumors in the 2 mm phantom head, personalized with the cheapest TMCMC settings
(32 samples per stage on a 4 mm calibration grid, one predictive draw): seconds per patient.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.cohort import layouts, predict_gbm, record, summary
from TumorPersonalizationLib.cohort.run import plan, recorded_settings
from TumorPersonalizationLib.cohort.synthetic import make_cohort
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.imaging import Geometry, Volume, read_volume, write_volume
from TumorPersonalizationLib.imaging.tissue import TissueMaps

from conftest import phantom_tissue

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GEOMETRY = Geometry((40, 44, 36), (2.0, 2.0, 2.0), (-40.0, -44.0, -36.0))
CHEAP = {"samples": 32, "grid_mm": 4.0, "predictive_draws": 1}


@pytest.fixture(scope="module")
def tissue():
    wm, gm, csf = phantom_tissue()
    return TissueMaps(Volume(wm, GEOMETRY), Volume(gm, GEOMETRY), Volume(csf, GEOMETRY))


@pytest.fixture
def cheap_settings(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(CHEAP))
    return path


def _touch(folder: Path, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def _folder_bytes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_layout_is_recognised_without_reading_images(tmp_path):
    _touch(tmp_path / "ours", "t1.nrrd", "t1gd.nii.gz", "flair.nii.gz", "wm.nii", "gm.nii", "notes.txt")
    _touch(tmp_path / "brats21", *(f"BraTS2021_00042_{r}.nii.gz" for r in ("t1", "t1ce", "t2", "flair", "seg")))
    _touch(tmp_path / "brats23", *(f"BraTS-GLI-00001-000-{r}.nii.gz" for r in ("t1n", "t1c", "t2w", "t2f", "seg")))
    _touch(tmp_path / "brats_t1ce_only", "x_t1ce.nii.gz", "x_seg.nii.gz")
    _touch(tmp_path / "Patient-00007", *(f"00007-{r}.nii.gz" for r in ("wm", "gm", "csf", "tumorseg", "pet")))
    _touch(tmp_path / "no_flair", "t1.nii.gz", "t1gd.nii.gz")
    _touch(tmp_path / "docs", "readme.txt")
    _touch(tmp_path / ".hidden", "t1gd.nii.gz")

    cohort = layouts.find_patients(tmp_path)
    found = {p.name: p for p in cohort.patients}
    assert set(found) == {"ours", "brats21", "brats23", "brats_t1ce_only", "Patient-00007", "no_flair"}
    assert {p.name: p.layout for p in cohort.patients}["Patient-00007"] == "predict-gbm"
    assert set(found["ours"].sources) == {"t1", "t1gd", "flair", "wm", "gm"}
    for name, t1 in (("brats21", "BraTS2021_00042_t1.nii.gz"), ("brats23", "BraTS-GLI-00001-000-t1n.nii.gz"),
                     ("brats_t1ce_only", "x_t1ce.nii.gz")):
        sources = found[name].sources
        assert found[name].layout == "brats" and sources["t1"].path.name == t1
        assert sources["t1gd"].select == layouts.CORE and sources["flair"].select == layouts.LESION
        assert sources["t1gd"].path == sources["flair"].path and sources["flair"].path.name.endswith("seg.nii.gz")
    pgbm = found["Patient-00007"].sources
    assert set(pgbm) == {"wm", "gm", "csf", "pet", "t1gd", "flair"}
    assert pgbm["t1gd"].path.name == "00007-tumorseg.nii.gz"
    assert found["no_flair"].missing == ("flair",)
    text = "\n".join(cohort.describe())
    assert "found 6 patient(s)" in text and "no_flair: missing flair" in text and "skipped docs" in text

    # What a method reads: TMCMC drops the T1 (it is not an input of TMCMC), LMI needs it.
    for_tmcmc = layouts.for_method(cohort, ("t1gd", "flair"), ("t1gd", "flair", "pet", "wm", "gm", "csf"))
    assert "t1" not in {p.name: p for p in for_tmcmc.patients}["ours"].sources
    for_lmi = layouts.for_method(cohort, ("t1", "t1gd", "flair"), ("t1", "t1gd", "flair", "wm", "gm", "csf"))
    assert {p.name: p for p in for_lmi.patients}["Patient-00007"].missing == ("t1",)


def test_a_manifest_lists_patients_with_relative_paths(tmp_path):
    _touch(tmp_path / "data", "a_seg.nii.gz", "a_t1.nii.gz", "b_t1gd.nii.gz", "b_flair.nii.gz")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("patient,t1,seg,t1gd,flair\nA,data/a_t1.nii.gz,data/a_seg.nii.gz,,\n"
                        "B,,,data/b_t1gd.nii.gz,data/b_flair.nii.gz\nC,,,data/c_t1gd.nii.gz,data/b_flair.nii.gz\n")
    patients = {p.name: p for p in layouts.find_patients(manifest).patients}
    assert patients["A"].sources["t1gd"] == layouts.Source(tmp_path / "data" / "a_seg.nii.gz", layouts.CORE)
    assert patients["B"].missing == () and patients["B"].layout == "manifest"
    assert patients["C"].missing == (f"t1gd ({tmp_path / 'data' / 'c_t1gd.nii.gz'} not found)",)
    for text, message in (("patient,t2\nA,x.nii.gz\n", "unknown: t2"), ("name,t1gd\nA,x\n", "'patient' column"),
                          ("patient,t1gd\nA,x\nA,y\n", "appears twice"), ("patient,t1gd\n../A,x\n", "folder name")):
        manifest.write_text(text)
        with pytest.raises(InputError, match=message):
            layouts.find_patients(manifest)


def test_label_maps_give_the_core_and_the_whole_lesion(tmp_path):
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[18:24, 20:26, 16:22] = 2  # edema
    labels[20:22, 22:24, 18:20] = 4  # enhancing (BraTS up to 2021)
    labels[20, 22, 18] = 1  # necrosis
    for enhancing in (4, 3):
        seg = np.where(labels == 4, enhancing, labels).astype(np.uint8)
        path = write_volume(Volume(seg, GEOMETRY), tmp_path / f"p_{enhancing}" / "p_seg.nii.gz")
        case = layouts.read_case(layouts.find_patients(tmp_path / f"p_{enhancing}").patients[0])
        assert np.array_equal(case.t1gd.array, np.isin(seg, (1, enhancing)))
        assert np.array_equal(case.flair.array, seg > 0)
        assert case.paths["t1gd"] == path
    write_volume(Volume((labels == 2).astype(np.uint8) * 2, GEOMETRY), tmp_path / "edema" / "e_seg.nii.gz")
    with pytest.raises(InputError, match=r"t1gd .*e_seg.nii.gz \(labels 1, 3, 4\): the tumor core is empty"):
        layouts.read_case(layouts.find_patients(tmp_path / "edema").patients[0])


def test_a_finished_patient_is_recognised_by_its_settings_and_inputs(tmp_path):
    image = tmp_path / "in" / "t1gd.nii.gz"
    _touch(image.parent)
    image.write_bytes(b"first")
    settings = recorded_settings("tmcmc", CHEAP)
    assert "workers" not in settings and "dask_scheduler" not in settings and settings["samples"] == 32
    folder = tmp_path / "out" / "P"
    folder.mkdir(parents=True)
    row = {"patient": "P", "status": "ok"}
    (folder / record.RECORD_NAME).write_text(json.dumps(
        {"method": "tmcmc", "settings": settings, "inputs": record.fingerprint({"t1gd": image}), "row": row}))
    assert record.finished_row(folder, "tmcmc", settings, {"t1gd": image}) == row
    assert record.finished_row(folder, "tmcmc", recorded_settings("tmcmc", {**CHEAP, "margin_mm": 10.0}),
                               {"t1gd": image}) is None
    assert record.finished_row(folder, "lmi", settings, {"t1gd": image}) is None
    os.utime(image, ns=(1, 1))  # a copied cohort: new times, same content
    assert record.finished_row(folder, "tmcmc", settings, {"t1gd": image}) == row
    image.write_bytes(b"other")  # same size, new content
    os.utime(image, ns=(2, 2))
    assert record.finished_row(folder, "tmcmc", settings, {"t1gd": image}) is None
    with pytest.raises(InputError, match="workers is decided by the cohort"):
        recorded_settings("tmcmc", {"workers": 2})


def test_bad_cohort_input_is_one_line_and_exit_2(tmp_path, capsys, cheap_settings):
    out = tmp_path / "out"
    for argv, message in (
            (["--input", str(tmp_path / "nowhere")], "no such folder or CSV manifest"),
            (["--input", str(tmp_path)], "no patient found"),
            (["--input", str(tmp_path), "--refine"], "--refine is not used by --method tmcmc"),
    ):
        assert main(["cohort", "--method", "tmcmc", "--out", str(out), "--quiet", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"workers": 3}))
    _touch(tmp_path / "P", "t1gd.nii.gz", "flair.nii.gz")
    assert main(["cohort", "--method", "tmcmc", "--input", str(tmp_path), "--out", str(out), "--settings", str(bad),
                 "--quiet"]) == 2
    assert "decided by the cohort" in capsys.readouterr().err
    assert main(["cohort", "--method", "tmcmc", "--input", str(tmp_path), "--out", str(out), "--workers", "0",
                 "--settings", str(cheap_settings), "--quiet"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert not out.exists()
    assert main(["cohort", "--method", "tmcmc", "--input", str(tmp_path), "--out", str(tmp_path), "--settings",
                 str(cheap_settings), "--quiet"]) == 2
    assert "would replace its input folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "P").iterdir()) == ["flair.nii.gz", "t1gd.nii.gz"]


def test_summary_columns_carry_units_and_failed_rows_stay_empty(tmp_path):
    patient = layouts.Patient("P1", "ours")
    report = {"method": "tmcmc", "quality": {"status": "ok"},
              "parameters": {"Dw": {"map": 0.3, "ci95": [0.2, 0.4], "unit": "mm^2/day"},
                             "mu2": {"map": 2.0, "ci95": [1.9, 2.1], "unit": "-"}},
              "plans": {"standard": {"volume_ml": 100.0}, "model": {"volume_ml": 100.0},
                        "dice_standard_vs_model": 0.8,
                        "recurrence": {p: {"coverage": c, "missed_ml": 1.0, "recurrence_ml": 5.0}
                                       for p, c in (("standard", 0.9), ("model", 0.95))}}}
    ok = summary.result_row(patient, report, {"T1Gd": 4.0, "FLAIR": 20.0},
                            {"reading": 0.1, "sampling_s": 3.0, "total": 5.0})
    failed = summary.failed_row(layouts.Patient("P0", "brats"), "flair P0/flair.nii.gz: cannot read", "tmcmc")
    path = summary.write_csv([ok, failed], tmp_path / "summary.csv")
    rows = summary.read_csv(path)
    assert [r["patient"] for r in rows] == ["P0", "P1"]
    columns = list(rows[0])
    assert columns[:6] == list(summary.LEADING) and columns[-1] == "seconds total"
    assert {"Dw [mm^2/day]", "Dw ci95 low [mm^2/day]", "mu2", "T1Gd [mL]", "standard CTV [mL]",
            "model CTV recurrence coverage", "seconds sampling"} <= set(columns)
    assert rows[0]["Dw [mm^2/day]"] == "" and rows[0]["status"] == "failed" and "cannot read" in rows[0]["error"]
    assert rows[1]["model CTV recurrence coverage"] == "0.95"
    assert summary.write_png(rows, tmp_path / "summary.png").stat().st_size > 0


def test_local_cluster_runs_a_mixed_cohort_and_reports_a_broken_patient(tmp_path, tissue, capsys, cheap_settings):
    cohort = tmp_path / "cohort"
    make_cohort(cohort, tissue, 2, layout="ours", rng_seed=1)
    make_cohort(cohort, tissue, 1, layout="brats", rng_seed=6, prefix="BraTS_")  # labels 2 / 4
    broken = shutil.copytree(cohort / "P000", cohort / "P999")
    (broken / "flair.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    argv = ["cohort", "--method", "tmcmc", "--input", str(cohort), "--out", str(out), "--workers", "2",
            "--settings", str(cheap_settings)]

    assert main(argv) == 1  # one patient failed
    captured = capsys.readouterr()
    assert "found 4 patient(s)" in captured.err and "(1 brats, 3 ours)" in captured.err
    assert json.loads(captured.out)["failed"] == ["P999"]
    rows = {r["patient"]: r for r in summary.read_csv(out / "summary.csv")}
    assert set(rows) == {"P000", "P001", "BraTS_000", "P999"}
    assert rows["P999"]["status"] == "failed" and "flair" in rows["P999"]["error"]
    assert "P999/flair.nii.gz" in rows["P999"]["error"]
    for name in ("P000", "P001", "BraTS_000"):
        assert rows[name]["status"] == "ok" and rows[name]["error"] == ""
        assert float(rows[name]["Dw [mm^2/day]"]) > 0 and float(rows[name]["model CTV [mL]"]) > 0
        assert float(rows[name]["seconds sampling"]) > 0
        assert read_volume(out / name / "density.nii.gz").geometry.is_close(GEOMETRY)
        assert json.loads((out / name / record.RECORD_NAME).read_text())["settings"]["samples"] == 32
    assert rows["BraTS_000"]["layout"] == "brats"
    assert (out / "summary.png").is_file() and "P000: sampling the posterior" in (out / "cohort.log").read_text()
    assert not (out / "P999").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]

    # A rerun skips the finished patients, untouched (the broken one, which a rerun would try again, is removed
    # from the cohort so that nothing is left to run and no cluster is started).
    before = {name: _folder_bytes(out / name) for name in ("P000", "P001", "BraTS_000")}
    shutil.rmtree(broken)
    assert main(argv + ["--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["computed"] == 0 and result["skipped_as_finished"] == 3
    assert {name: _folder_bytes(out / name) for name in before} == before
    assert [r["patient"] for r in summary.read_csv(out / "summary.csv")] == ["BraTS_000", "P000", "P001"]
    # A changed setting recomputes every patient.
    found = layouts.find_patients(cohort)
    _, todo, skipped = plan(found, "tmcmc", recorded_settings("tmcmc", {**CHEAP, "margin_mm": 10.0}), out)
    assert len(todo) == 3 and not skipped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster_processes(tmp_path):
    """A `dask scheduler` and a `dask worker` (one thread) on 127.0.0.1, as separate processes; torn down after."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "NUMBA_NUM_THREADS": "1"}
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker")]
    processes = [subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        processes.append(subprocess.Popen([str(VENV_BIN / "dask"), "worker", address, "--nthreads", "1",
                                           "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, stdout=logs[1], stderr=subprocess.STDOUT))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(1, timeout=60)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def test_scheduler_and_worker_processes_interrupt_and_resume_in_the_predict_gbm_layout(
        tmp_path, tissue, dask_cluster_processes, cheap_settings):
    mlcube_in, mlcube_out = tmp_path / "mlcube_io0", tmp_path / "mlcube_io1"
    # Four patients, one at a time: after the first finishes, the interrupt cannot miss the other three even when a
    # loaded machine delays this test's polling by seconds (with two, the second sometimes finished first).
    make_cohort(mlcube_in, tissue, 4, layout="predict-gbm", rng_seed=1, prefix="00")
    subjects = [f"0000{i}" for i in range(4)]
    assert sorted(p.name for p in mlcube_in.iterdir()) == [f"Patient-{s}" for s in subjects]
    args = ["--input", str(mlcube_in), "--output", str(mlcube_out), "--scheduler", dask_cluster_processes,
            "--settings", str(cheap_settings), "--quiet"]
    work = mlcube_out / ".tumorpersonalization"

    # Run the container's entry point in a process and stop it as `docker stop` does (SIGTERM) once a patient
    # finished. (Not SIGINT: a shell that starts the tests in the background makes its children ignore SIGINT.)
    process = subprocess.Popen([sys.executable, "-m", "TumorPersonalizationLib.cohort.predict_gbm", *args],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob(f"*/{record.RECORD_NAME}")) and process.poll() is None:
            assert time.monotonic() < deadline, "no patient finished in 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted: finished patients are complete" in err
    finished = sorted(p.parent for p in work.glob(f"*/{record.RECORD_NAME}"))
    assert 1 <= len(finished) < 4  # one patient in flight at a time (one worker thread): the rest were stopped
    visible = sorted(p for p in work.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert visible == finished  # no half-written patient folder
    # The density is copied once the client has the patient's result: at most the finished patients' are there.
    assert {p.name for p in mlcube_out.glob("*.nii.gz")} <= {f"{predict_gbm.subject_id(p.name)}.nii.gz"
                                                             for p in finished}
    before = {p: _folder_bytes(p) for p in finished}

    # Resume on the same cluster: the finished patients are untouched, the others are computed.
    assert predict_gbm.main(args) == 0
    assert {p: _folder_bytes(p) for p in finished} == before
    rows = {r["patient"]: r for r in summary.read_csv(work / "summary.csv")}
    assert {name: r["status"] for name, r in rows.items()} == {f"Patient-{s}": "ok" for s in subjects}
    assert not [p for p in work.iterdir() if p.name.startswith(".")]
    for subject in subjects:
        density = read_volume(mlcube_out / f"{subject}.nii.gz")
        wm = read_volume(mlcube_in / f"Patient-{subject}" / f"{subject}-wm.nii.gz")
        assert density.geometry.is_close(wm.geometry)
        assert 0.0 <= density.array.min() and density.array.max() <= 1.0 and density.array.max() > 0.5


def test_predict_gbm_dockerfile_copies_what_exists_and_its_entry_point_runs():
    """The container cannot be built here (no Docker daemon): check what its build and start rely on."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    lines = (root / "docker" / "predict_gbm.Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies and all((root / source).exists() for sources in copies for source in sources)
    env = dict(line.split()[1].split("=", 1) for line in lines if line.startswith("ENV "))
    resources = Path(env["TUMORPERSONALIZATION_RESOURCES"])
    workdir = Path(next(line.split()[1] for line in lines if line.startswith("WORKDIR ")))
    assert resources.parent == workdir and [resources.name] in [c for c in copies]  # the data stays in the image
    entry = json.loads(next(line[len("ENTRYPOINT "):] for line in lines if line.startswith("ENTRYPOINT ")))
    assert entry[:2] == ["python", "-m"]
    done = subprocess.run([sys.executable, *entry[1:], "--help"], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0 and "/mlcube_io0" in done.stdout, shlex.join(entry) + done.stderr
