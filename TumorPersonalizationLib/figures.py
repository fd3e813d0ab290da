"""PNG figures for reports: slices with a density overlay.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so importing this module does not
change the backend of a host application (Slicer) and needs no display.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.lines
import numpy as np
from matplotlib.figure import Figure

from .errors import InputError
from .files import atomic_path
from .imaging.volume import Volume, reorient_to_ras_axes

CONTOUR_LEVELS = (0.25, 0.6)
"""Density levels outlined in the overview (the thesis' T1Gd-like and FLAIR-like visible borders differ; these
are the benchmark's Dice levels)."""


def _save_atomically(fig, path: Path, dpi: int) -> Path:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _three_views(volumes, centre_index):
    """Axial, coronal and sagittal slices of several same-grid volumes through ``centre_index``.

    Returns a list of ``(name, [2D arrays], aspect, (left label, right label))``; each 2D array has rows running
    bottom to top (draw with ``origin="lower"``) and is already flipped to the radiological convention (patient's
    right on the left of the picture).
    """
    reoriented = [reorient_to_ras_axes(v) for v in volumes]
    spacing, to_display = reoriented[0][1], reoriented[0][2]
    arrays = [r[0] for r in reoriented]
    r, a, s = np.clip(np.rint(to_display(centre_index)).astype(int), 0, np.asarray(arrays[0].shape) - 1)
    return [
        ("axial", [x[:, :, s].T[:, ::-1] for x in arrays], spacing[1] / spacing[0], ("R", "L")),
        ("coronal", [x[:, a, :].T[:, ::-1] for x in arrays], spacing[2] / spacing[0], ("R", "L")),
        ("sagittal", [x[r, :, :].T for x in arrays], spacing[2] / spacing[1], ("P", "A")),
    ]


def _draw_view(ax, name, background, density, aspect, labels, vmax, min_density):
    ax.imshow(background, cmap="gray", origin="lower", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
    image = ax.imshow(np.ma.masked_less(density, min_density), cmap="inferno", origin="lower", vmin=0, vmax=1,
                      alpha=0.75, aspect=aspect, interpolation="nearest")
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.02, 0.5, labels[0], transform=ax.transAxes, color="white", va="center", fontsize=11)
    ax.text(0.95, 0.5, labels[1], transform=ax.transAxes, color="white", va="center", fontsize=11)
    return image


def _check_grids(reference: Volume, others) -> None:
    for name, volume in others.items():
        if volume is not None and not reference.geometry.is_close(volume.geometry):
            raise InputError(f"figure: {name} lies on a different grid than the density")


def density_overview(density: Volume, background: Volume, centre_index, path, title: str = "",
                     min_density: float = 0.01, dpi: int = 110) -> Path:
    """Three orthogonal slices (axial, coronal, sagittal) through ``centre_index`` with the density over the image.

    Parameters
    ----------
    density : Volume
        Tumor cell density in [0, 1].
    background : Volume
        Same grid as ``density`` (T1 or a tissue map); shown in grey.
    centre_index : sequence of 3 float
        Voxel index (i, j, k) the slices pass through (e.g. the seed).
    path : str or Path
        Output PNG (written atomically).
    min_density : float
        Densities below this are transparent.

    Images follow the radiological convention (patient's right on the left of the picture) and are labelled.
    """
    _check_grids(density, {"background image": background})
    vmax = float(np.percentile(background.array, 99.5)) or 1.0
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 3)
    image = None
    for ax, (name, (bg, dn), aspect, labels) in zip(axes, _three_views([background, density], centre_index)):
        image = _draw_view(ax, name, bg, dn, aspect, labels, vmax, min_density)
        if dn.max() > min(CONTOUR_LEVELS):
            ax.contour(dn, levels=CONTOUR_LEVELS, colors=["cyan", "lime"], linewidths=0.8, origin="lower")
    bar = fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    bar.set_label("tumor cell density (contours at " + ", ".join(str(v) for v in CONTOUR_LEVELS) + ")")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_atomically(fig, Path(path), dpi)


def plan_overview(density: Volume, background: Volume, outlines: dict, centre_index, path, title: str = "",
                  min_density: float = 0.01, dpi: int = 110) -> Path:
    """Slices through ``centre_index`` with the density and the outlines of masks (plans, core, recurrence).

    Parameters
    ----------
    outlines : dict of str -> (Volume, colour)
        Label shown in the legend -> boolean mask on the density's grid and a matplotlib colour.
    """
    _check_grids(density, {"background image": background, **{k: v for k, (v, _) in outlines.items()}})
    names = list(outlines)
    volumes = [background, density] + [outlines[n][0].like(outlines[n][0].array.astype(np.float32)) for n in names]
    vmax = float(np.percentile(background.array, 99.5)) or 1.0
    fig = Figure(figsize=(12, 4.9))
    axes = fig.subplots(1, 3)
    image = None
    for ax, (view, slices, aspect, labels) in zip(axes, _three_views(volumes, centre_index)):
        image = _draw_view(ax, view, slices[0], slices[1], aspect, labels, vmax, min_density)
        for name, mask in zip(names, slices[2:]):
            if mask.any() and not mask.all():
                ax.contour(mask, levels=[0.5], colors=[outlines[name][1]], linewidths=1.1, origin="lower")
    handles = [matplotlib.lines.Line2D([], [], color=outlines[n][1], label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=len(names), frameon=False, fontsize=9)
    bar = fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    bar.set_label("tumor cell density")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_atomically(fig, Path(path), dpi)


def posterior_corner(samples: np.ndarray, names, path, truth: dict | None = None, max_points: int = 1500,
                     dpi: int = 90) -> Path:
    """Corner-style plot: histograms of each parameter on the diagonal, pairwise scatter below it.

    Parameters
    ----------
    samples : np.ndarray, shape (n, p)
        Equally weighted posterior samples in natural units.
    names : sequence of str
    truth : dict, optional
        Known values (synthetic cases), drawn as red lines.
    """
    samples = np.asarray(samples)
    p = samples.shape[1]
    rng = np.random.default_rng(0)
    shown = samples[rng.choice(len(samples), size=min(max_points, len(samples)), replace=False)]
    fig = Figure(figsize=(1.6 * p, 1.6 * p))
    axes = fig.subplots(p, p, squeeze=False)
    for row in range(p):
        for col in range(p):
            ax = axes[row, col]
            if col > row:
                ax.set_axis_off()
                continue
            if row == col:
                ax.hist(samples[:, col], bins=30, color="steelblue")
                ax.set_yticks([])
            else:
                ax.scatter(shown[:, col], shown[:, row], s=1, alpha=0.3, color="steelblue")
            if truth is not None and names[col] in truth:
                ax.axvline(truth[names[col]], color="red", lw=0.8)
                if row != col and names[row] in truth:
                    ax.axhline(truth[names[row]], color="red", lw=0.8)
            ax.tick_params(labelsize=5)
            ax.locator_params(nbins=3)
            if row == p - 1:
                ax.set_xlabel(names[col], fontsize=7)
            if col == 0 and row > 0:
                ax.set_ylabel(names[row], fontsize=7)
    fig.suptitle("posterior marginals" + (" (red: ground truth)" if truth else ""), fontsize=10)
    return _save_atomically(fig, Path(path), dpi)
