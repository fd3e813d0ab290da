"""A cohort's summary: ``summary.csv`` (one row per patient) and ``summary.png``.

Columns, in this order (units in brackets in the names; fractions in [0, 1]):

- ``patient`` (the folder's or the manifest's name), ``status`` (``ok`` or ``failed``), ``error`` (the failure's
  message), ``method``, ``layout``, ``fit`` (``ok`` or ``poor fit``: does the density explain the segmentations);
- each parameter's estimate, ``Dw [mm^2/day]``, ``rho [1/day]``, ``T [days]``, ... (a method that samples gives the
  maximum a posteriori value and ``... ci95 low`` / ``... ci95 high``);
- volumes: ``T1Gd [mL]``, ``FLAIR [mL]``, ``standard CTV [mL]``, ``model CTV [mL]``, ``Dice standard vs model``;
  with a follow-up: ``recurrence [mL]`` and each plan's ``recurrence coverage`` and ``missed [mL]``;
- ``seconds <stage>`` for reading the inputs, each stage the method reports, writing, and ``seconds total``.

A column a patient lacks (a failed patient's parameters) is left empty.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..files import atomic_path

LEADING = ("patient", "status", "error", "method", "layout", "fit")


def _column(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit and unit != "-" else name


def _round(value, digits: int = 6):
    return round(float(value), digits)


def result_row(patient, report: dict, lesion_ml: dict, seconds: dict) -> dict:
    """The summary row of a finished patient.

    Parameters
    ----------
    patient : layouts.Patient
    report : dict
        The result's report (``report.json``): parameters, plans, quality.
    lesion_ml : dict
        {"T1Gd": mL, "FLAIR": mL}, the segmentations' volumes.
    seconds : dict
        {stage: s}, in the order the columns should have.
    """
    row = {"patient": patient.name, "status": "ok", "error": "", "method": report.get("method", ""),
           "layout": patient.layout, "fit": report.get("quality", {}).get("status", "")}
    for name, entry in report.get("parameters", {}).items():
        unit = entry.get("unit", "")
        row[_column(name, unit)] = _round(entry["value"] if "value" in entry else entry["map"])
        if "ci95" in entry:
            row[_column(f"{name} ci95 low", unit)] = _round(entry["ci95"][0])
            row[_column(f"{name} ci95 high", unit)] = _round(entry["ci95"][1])
    for name, ml in lesion_ml.items():
        row[f"{name} [mL]"] = _round(ml, 3)
    plans = report.get("plans", {})
    row["standard CTV [mL]"] = _round(plans["standard"]["volume_ml"], 3)
    row["model CTV [mL]"] = _round(plans["model"]["volume_ml"], 3)
    if "probabilistic" in plans:
        row["probabilistic CTV [mL]"] = _round(plans["probabilistic"]["volume_ml"], 3)
    row["Dice standard vs model"] = _round(plans["dice_standard_vs_model"], 4)
    if "recurrence" in plans:
        row["recurrence [mL]"] = _round(plans["recurrence"]["standard"]["recurrence_ml"], 3)
        for plan in ("standard", "model"):
            row[f"{plan} CTV recurrence coverage"] = _round(plans["recurrence"][plan]["coverage"], 4)
            row[f"{plan} CTV missed [mL]"] = _round(plans["recurrence"][plan]["missed_ml"], 3)
    row.update(seconds_columns(seconds))
    return row


def failed_row(patient, error: str, method: str, seconds: dict | None = None) -> dict:
    """The summary row of a patient that failed (or could not start: missing inputs)."""
    return {"patient": patient.name, "status": "failed", "error": error, "method": method,
            "layout": patient.layout, "fit": "", **seconds_columns(seconds or {})}


def seconds_columns(seconds: dict) -> dict:
    """{"seconds <stage>": s} (a method's ``sampling_s`` becomes ``seconds sampling``)."""
    out = {}
    for stage, value in seconds.items():
        name = stage[:-2] if stage.endswith("_s") else stage
        out[f"seconds {name}"] = _round(value, 3)
    return out


def columns(rows) -> list[str]:
    """Every column of ``rows``: the leading ones, then the others in the order they first appear, the seconds
    last."""
    seen = list(LEADING)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.append(key)
    timing = [c for c in seen if c.startswith("seconds ")]
    total = [c for c in timing if c == "seconds total"]
    return [c for c in seen if c not in timing] + [c for c in timing if c not in total] + total


def write_csv(rows, path) -> Path:
    """Write ``rows`` (dicts, one per patient, sorted by patient) as CSV, atomically."""
    rows = sorted(rows, key=lambda r: r["patient"])
    names = columns(rows)
    with atomic_path(path, ".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=names, restval="")
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


def read_csv(path) -> list[dict]:
    """The rows of a ``summary.csv`` (values as text)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


PLOTTED_PARAMETERS = ("Dw", "rho", "T", "mu1", "mu2")


def write_png(rows, path, title: str = "") -> Path:
    """``summary.png``: per patient, the model plan against the standard plan (recurrence coverage when
    follow-ups are given, else their overlap against the standard CTV's volume), and the distributions of the
    growth parameters.

    The figure needs at least one successful patient; with none it is not written (returns None).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    parameters = [c for name in PLOTTED_PARAMETERS for c in columns(ok)
                  if c == name or c.startswith(f"{name} [")]
    panels = 1 + len(parameters)
    ncols = min(3, panels)
    nrows = -(-panels // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    axes = axes.ravel()
    for axis in axes[panels:]:
        axis.set_axis_off()
    first = axes[0]
    shown = [r for r in ok if "model CTV recurrence coverage" in r]
    if shown:
        x = [float(r["standard CTV recurrence coverage"]) for r in shown]
        y = [float(r["model CTV recurrence coverage"]) for r in shown]
        first.set(xlabel="standard CTV: recurrence coverage", ylabel="model CTV: recurrence coverage",
                  xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="recurrence coverage per patient")
        first.plot([0, 1], [0, 1], color="0.6", lw=1)
    else:
        # Without a follow-up there is no coverage to compare; the iso-volume plans have equal volumes, so what
        # tells them apart is where they differ: their overlap.
        shown = ok
        x = [float(r["standard CTV [mL]"]) for r in ok]
        y = [float(r["Dice standard vs model"]) for r in ok]
        first.set(xlabel="standard CTV [mL]", ylabel="Dice of model CTV with standard CTV", ylim=(-0.02, 1.02),
                  title="plans per patient (no follow-up given)")
    first.scatter(x, y, s=18, color="tab:blue")
    if len(shown) <= 30:  # names stay readable for small cohorts only
        for xi, yi, r in zip(x, y, shown):
            first.annotate(r["patient"], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for axis, column in zip(axes[1:], parameters):
        values = [float(r[column]) for r in ok if r.get(column) not in (None, "")]
        axis.hist(values, bins=min(20, max(3, len(values))), color="tab:orange", edgecolor="white")
        axis.set(xlabel=column, ylabel="patients", title=column.split(" [")[0])
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    failed = len(rows) - len(ok)
    figure.suptitle((title + "  " if title else "") + f"{len(ok)} ok, {failed} failed")
    figure.tight_layout()
    with atomic_path(path, ".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return Path(path)
