"""The method contract: Case validation, the registry, Settings checks (the same errors from Python and the CLI),
`methods --json`, and the README's Python example."""
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import TumorPersonalizationLib
from TumorPersonalizationLib import methods
from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.errors import Cancelled, InputError
from TumorPersonalizationLib.imaging import Geometry, Volume, write_volume
from TumorPersonalizationLib.personalization import Case, Progress

from conftest import phantom_tissue

ROOT = Path(__file__).resolve().parents[2]
GEOMETRY = Geometry((40, 44, 36), (2.0, 2.0, 2.0), (-40.0, -44.0, -36.0))


def _lesion():
    t1gd = np.zeros(GEOMETRY.shape, np.uint8)
    t1gd[18:22, 20:24, 16:20] = 1
    flair = np.zeros(GEOMETRY.shape, np.uint8)
    flair[15:25, 17:27, 13:23] = 1
    return Volume(t1gd, GEOMETRY), Volume(flair, GEOMETRY)


def _tissue():
    return tuple(Volume(a, GEOMETRY) for a in phantom_tissue())


def test_case_holds_validated_inputs_on_one_grid():
    t1gd, flair = _lesion()
    wm, gm, csf = _tissue()
    t1 = Volume(np.random.default_rng(0).normal(100, 10, GEOMETRY.shape).astype(np.int16), GEOMETRY)
    case = Case.from_volumes(t1gd, flair.like(flair.array * 0 + (flair.array & ~t1gd.array)), t1=t1, wm=wm, gm=gm,
                             csf=csf)
    assert case.t1gd.array.dtype == bool and case.flair.array.dtype == bool
    assert np.all(case.flair.array >= case.t1gd.array)  # the union: FLAIR shows the whole visible lesion
    assert case.t1.array.dtype == np.float32 and case.geometry == GEOMETRY
    assert case.tissue.wm is case.wm and case.tissue.background is case.t1
    assert case.given() == ("t1", "t1gd", "flair", "wm", "gm", "csf")


@pytest.mark.parametrize("change, message", [
    (lambda v: dict(v, t1gd=v["t1gd"].like(np.zeros(GEOMETRY.shape, np.uint8))),
     "the t1gd input: the T1Gd segmentation is empty"),
    (lambda v: dict(v, t1gd=v["flair"], flair=v["t1gd"]), "the flair input: the FLAIR segmentation"),
    (lambda v: dict(v, flair=v["flair"].like(v["flair"].array * 2)), "the flair input: expected a binary"),
    (lambda v: dict(v, t1=v["t1"].like(np.full(GEOMETRY.shape, np.nan, np.float32))), "the t1 input: the image "
     "contains NaN"),
    (lambda v: dict(v, wm=v["wm"].like(v["wm"].array * 3)), "the wm input: probabilities must lie in [0, 1]"),
    (lambda v: dict(v, gm=None), "give both the WM and the GM map"),
    (lambda v: dict(v, wm=None, gm=None), "the csf input was given without WM and GM"),
    (lambda v: dict(v, csf=Volume(v["csf"].array, Geometry(GEOMETRY.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))),
     "the csf input"),
    (lambda v: dict(v, recurrence=v["t1gd"].like(v["t1gd"].array * 3.0)), "the recurrence input: expected a binary"),
    (lambda v: dict(v, pet=v["t1gd"].like(v["t1gd"].array - 1.0)), "the pet input: the PET image has negative"),
])
def test_bad_case_inputs_are_named(change, message):
    t1gd, flair = _lesion()
    wm, gm, csf = _tissue()
    values = {"t1gd": t1gd, "flair": flair, "t1": t1gd.like(np.ones(GEOMETRY.shape, np.float32)), "wm": wm, "gm": gm,
              "csf": csf}
    values = change(values)
    names = {key: f"the {key} input" for key in ("t1", "t1gd", "flair", "pet", "wm", "gm", "csf", "recurrence")}
    with pytest.raises(InputError, match=re.escape(message)):
        Case.from_volumes(**values, names=names)


def test_case_from_files_names_the_files(tmp_path):
    t1gd, flair = _lesion()
    write_volume(t1gd, tmp_path / "t1gd.nii.gz")
    write_volume(flair.like(np.zeros(GEOMETRY.shape, np.uint8)), tmp_path / "flair.nii.gz")
    with pytest.raises(InputError, match=r"flair .*flair.nii.gz: the FLAIR segmentation \(0 voxels\)"):
        Case.from_files(t1gd=tmp_path / "t1gd.nii.gz", flair=tmp_path / "flair.nii.gz")
    with pytest.raises(InputError, match="file not found"):
        Case.from_files(t1gd=tmp_path / "t1gd.nii.gz", flair=tmp_path / "missing.nii.gz")


def test_registry_lists_every_method_with_its_settings():
    assert methods.names() == ("lmi", "tmcmc", "npe")
    for entry in methods.available():
        module = methods.get(entry["name"])
        assert entry["summary"] and entry["inputs"]["required"][-2:] == ["t1gd", "flair"]
        fields = {f["name"]: f for f in entry["settings"]}
        assert fields["margin_mm"]["unit"] == "mm" and fields["margin_mm"]["default"] == 15.0
        assert all(f["help"] for f in entry["settings"])
        # The command line shows at most 15 inputs and settings per method; the rest go in --settings.
        inputs = entry["inputs"]["required"] + entry["inputs"]["optional"]
        assert len(inputs) + len([f for f in entry["settings"] if f["flag"]]) <= 15
        assert module.Settings() == module.Settings.from_mapping({})
    with pytest.raises(InputError, match="unknown method 'abc'; choose one of lmi, tmcmc, npe"):
        methods.get("abc")


def test_listing_methods_imports_no_numerics():
    code = ("import sys, TumorPersonalizationLib.methods as m; m.available(); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('numpy', 'torch', 'scipy', 'SimpleITK')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert completed.stdout.strip() == "[]"


def test_methods_json_lists_lmi_and_tmcmc(capsys):
    assert main(["methods", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["methods"]
    assert [m["name"] for m in listing] == ["lmi", "tmcmc", "npe"]
    tmcmc = {f["name"]: f for f in listing[1]["settings"]}
    assert tmcmc["samples"] == {"name": "samples", "default": 2048, "unit": "", "help": "TMCMC population per stage",
                                "type": "int", "flag": "--samples", "choices": None}
    assert main(["methods"]) == 0
    assert "refine_polish_evaluations" in capsys.readouterr().out


@pytest.mark.parametrize("method, values, message", [
    ("lmi", {"refine_evaluations": 3}, "refine_evaluations must be at least 6, got 3"),
    ("lmi", {"refine_fine_evaluations": 3}, "refine_fine_evaluations must be 0 (skip) or at least 6, got 3"),
    ("lmi", {"mu_from": "network", "shape_weights": "x.pt"}, "shape_weights is not read with mu_from 'network'"),
    ("lmi", {"skull_stripped": "maybe"}, "skull_stripped (--skull-stripped) must be one of auto, yes, no"),
    ("tmcmc", {"samples": 8}, "samples (--samples) must be at least 32, got 8"),
    ("tmcmc", {"samples": 1_000_000_000}, "samples (--samples) must be at most 100000, got 1000000000"),
    ("tmcmc", {"samples": 64, "fast": True}, "give samples (--samples) or fast (--fast), not both"),
    ("tmcmc", {"margin_mm": -1.0}, "margin_mm (--margin-mm) must be at least 0, got -1.0"),
    ("tmcmc", {"samples": "many"}, "samples (--samples) must be a whole number, got 'many'"),
    ("tmcmc", {"refine": True}, "unknown setting(s) refine"),
])
def test_settings_errors_are_the_same_from_python_and_the_cli(tmp_path, capsys, method, values, message):
    with pytest.raises(InputError, match=re.escape(message)):
        methods.make_settings(method, **values)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(values))
    t1gd, flair = _lesion()
    files = {name: write_volume(v, tmp_path / f"{name}.nii.gz") for name, v in (("t1gd", t1gd), ("flair", flair))}
    argv = ["personalize", "--method", method, "--t1", str(files["t1gd"]), "--t1gd", str(files["t1gd"]),
            "--flair", str(files["flair"]), "--settings", str(settings_file), "--out", str(tmp_path / "o"), "--quiet"]
    if method == "tmcmc":
        argv.remove("--t1"), argv.remove(str(files["t1gd"]))
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_flags_of_another_method_and_unread_inputs_are_refused(tmp_path, capsys):
    t1gd, flair = _lesion()
    files = {name: str(write_volume(v, tmp_path / f"{name}.nii.gz")) for name, v in (("t1gd", t1gd), ("flair", flair))}
    base = ["personalize", "--t1gd", files["t1gd"], "--flair", files["flair"], "--out", str(tmp_path / "o")]
    assert main(base + ["--method", "lmi", "--t1", files["t1gd"], "--samples", "64"]) == 2
    assert "--samples is not used by --method lmi (it belongs to --method tmcmc)" in capsys.readouterr().err
    assert main(base + ["--method", "lmi"]) == 2
    assert "--method lmi needs --t1" in capsys.readouterr().err
    assert main(base + ["--method", "lmi", "--t1", files["t1gd"], "--pet", files["t1gd"]]) == 2
    assert "--pet is not used by --method lmi" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(base + ["--method", "tmcmc", "--settings", str(tmp_path / "bad.json")]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_progress_forwards_and_cancels():
    seen, cancel = [], threading.Event()
    progress = Progress(lambda fraction, message: seen.append((fraction, message)), cancel)
    progress(0.2, "a")
    progress.part(0.5, 1.0, "b")(0.5)
    assert seen == [(0.2, "a"), (0.75, "b")]
    cancel.set()
    with pytest.raises(Cancelled):
        progress(0.9)


def test_python_api_runs_a_method_through_the_registry():
    # Through the package root, as a console user would; the phantom's masks lie on its tissue grid.
    wm, gm, csf = _tissue()
    t1gd, flair = _lesion()
    case = TumorPersonalizationLib.Case.from_volumes(t1gd, flair, wm=wm, gm=gm, csf=csf)
    fractions = []
    result = TumorPersonalizationLib.personalize(case, method="tmcmc", samples=32, workers=1, predictive_draws=2,
                                                 progress=lambda f, m: fractions.append(f))
    assert isinstance(result, TumorPersonalizationLib.Personalization) and fractions[-1] == 1.0
    assert result.density.geometry == GEOMETRY and result.plans.report["core_inside_model_plan"] == 1.0
    assert set(result.parameters) >= {"mu1", "mu2", "Dw", "rho", "T"}
    with pytest.raises(Cancelled):
        cancelled = threading.Event()
        cancelled.set()
        TumorPersonalizationLib.personalize(case, method="tmcmc", samples=32, workers=1, cancel=cancelled)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(# README example.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "README.md must hold one block starting with '# README example'"
    monkeypatch.chdir(ROOT)
    code = blocks[0].replace('"output/example_api"', repr(str(tmp_path / "example_api")))
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "example_api" / "density.nii.gz").is_file()
    assert json.loads((tmp_path / "example_api" / "report.json").read_text())["method"] == "lmi"


def test_outputs_appear_together_and_never_over_a_file(tmp_path, capsys):
    wm, gm, csf = _tissue()
    t1gd, flair = _lesion()
    case = Case.from_volumes(t1gd, flair, wm=wm, gm=gm, csf=csf)
    result = methods.personalize(case, "tmcmc", samples=32, workers=1, predictive_draws=2)
    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(InputError, match="is an existing file"):
        result.write(tmp_path / "a_file")
    assert (tmp_path / "a_file").read_text() == "keep me"
    # An earlier run's outputs that this run does not make are removed; nothing half-written stays beside it.
    out = tmp_path / "out"
    out.mkdir()
    (out / "ctv_probabilistic.nii.gz").write_text("old")
    (out / "notes.txt").write_text("the user's own file")
    result.probabilistic = None
    result.write(out)
    assert not (out / "ctv_probabilistic.nii.gz").exists() and (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "density.nii.gz").is_file() and (out / "report.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fit_quality_flags_a_density_that_does_not_explain_the_lesion():
    from TumorPersonalizationLib.personalization.quality import assess

    t1gd, flair = _lesion()
    idx = np.indices(GEOMETRY.shape)
    near = np.exp(-sum((idx[a] - c) ** 2 for a, c in enumerate((19.5, 21.5, 17.5))) / 20.0).astype(np.float32)
    good = assess(Volume(near, GEOMETRY), Case.from_volumes(t1gd, flair).t1gd, flair.like(flair.array > 0))
    assert good["status"] == "ok" and good["flair_dice"] > 0.7, good
    far = np.roll(near, 14, axis=0)  # the same tumor 28 mm away
    poor = assess(Volume(far, GEOMETRY), t1gd.like(t1gd.array > 0), flair.like(flair.array > 0))
    assert poor["status"] == "poor fit" and poor["centre_distance_mm"] > 20.0
    assert any("FLAIR lesion poorly" in w for w in poor["warnings"])
    # A density that fits, from parameters far outside the prior (LMI's rho of a T1Gd given as FLAIR: 3.42/day).
    masks = (t1gd.like(t1gd.array > 0), flair.like(flair.array > 0))
    extrapolated = assess(Volume(near, GEOMETRY), *masks, {"Dw": {"value": 0.3}, "rho": {"value": 3.42},
                                                           "T": {"map": 200.0}})
    assert extrapolated["status"] == "poor fit"
    assert extrapolated["warnings"] == ["rho = 3.42 1/day lies outside the prior range [0.002, 0.2] 1/day: the "
                                        "segmentations are unlike the tumors the model was fitted to"]
    inside = assess(Volume(near, GEOMETRY), *masks, {"Dw": 1.5, "rho": {"value": 0.002}, "T": {"map": 1500.0}})
    assert inside["status"] == "ok"


def test_cli_writes_a_poor_fit_but_exits_3_with_a_warning(tmp_path, capsys, monkeypatch):
    # A method whose density lies away from the lesion (as LMI's did on a deep midline lesion): the files are
    # written, report.json says "poor fit", stderr warns, and the exit code is neither 0 nor an input error.
    from TumorPersonalizationLib.personalization import Personalization
    from TumorPersonalizationLib.personalization.quality import POOR_FIT_EXIT_CODE

    wm, gm, csf = _tissue()
    t1gd, flair = _lesion()
    files = {n: str(write_volume(v, tmp_path / f"{n}.nii.gz")) for n, v in
             (("t1gd", t1gd), ("flair", flair), ("wm", wm), ("gm", gm), ("csf", csf))}

    def misplaced(case, method, settings=None, progress=None, cancel=None):
        density = np.zeros(GEOMETRY.shape, np.float32)
        density[2:8, 20:24, 16:20] = 0.9
        return Personalization.create(method, case, case.tissue, case.t1gd.like(density), {},
                                      {"parameters": {}, "timings_s": {}})

    monkeypatch.setattr(methods, "personalize", misplaced)
    argv = ["personalize", "--method", "tmcmc", "--t1gd", files["t1gd"], "--flair", files["flair"], "--wm",
            files["wm"], "--gm", files["gm"], "--csf", files["csf"], "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == POOR_FIT_EXIT_CODE
    err = capsys.readouterr().err
    assert "warning: the density matches the FLAIR lesion poorly" in err and "does not explain" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["quality"]["status"] == "poor fit" and (tmp_path / "out" / "density.nii.gz").is_file()


def test_python_callers_get_the_input_rules_of_the_command_line():
    t1gd, flair = _lesion()
    case = Case.from_volumes(t1gd, flair, pet=t1gd.like(t1gd.array.astype(np.float32)))
    with pytest.raises(InputError, match="pet is not used by method lmi"):
        methods.personalize(case, "lmi")
    with pytest.raises(InputError, match="method lmi needs t1"):
        methods.personalize(Case.from_volumes(t1gd, flair), "lmi")
