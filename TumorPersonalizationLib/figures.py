"""PNG figures for reports: slices with a density overlay. Uses matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .errors import InputError  # noqa: E402
from .imaging.volume import Volume, reorient_to_ras_axes  # noqa: E402

CONTOUR_LEVELS = (0.25, 0.6)
"""Density levels outlined in the overview (the thesis' T1Gd-like and FLAIR-like visible borders differ; these
are the benchmark's Dice levels)."""


def _save_atomically(fig, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


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
    if not density.geometry.is_close(background.geometry):
        raise InputError("overview: density and background image lie on different grids")
    dens, spacing, to_display = reorient_to_ras_axes(density)
    back, _, _ = reorient_to_ras_axes(background)
    centre = np.clip(np.rint(to_display(centre_index)).astype(int), 0, np.asarray(dens.shape) - 1)
    r, a, s = centre
    # (slice 2D arrays with rows = vertical axis bottom-to-top, columns = horizontal axis), aspect, axis labels
    views = [
        ("axial", back[:, :, s].T, dens[:, :, s].T, spacing[1] / spacing[0], ("L", "R")),
        ("coronal", back[:, a, :].T, dens[:, a, :].T, spacing[2] / spacing[0], ("L", "R")),
        ("sagittal", back[r, :, :].T, dens[r, :, :].T, spacing[2] / spacing[1], ("P", "A")),
    ]
    vmax = float(np.percentile(back, 99.5)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    cmap = matplotlib.colormaps["inferno"].copy()
    image = None
    for ax, (name, bg, dn, aspect, (left, right)) in zip(axes, views):
        flip = name != "sagittal"  # radiological: patient's right (low R index) drawn on the left
        bg = bg[:, ::-1] if flip else bg
        dn = dn[:, ::-1] if flip else dn
        if flip:
            left, right = right, left
        ax.imshow(bg, cmap="gray", origin="lower", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
        image = ax.imshow(np.ma.masked_less(dn, min_density), cmap=cmap, origin="lower", vmin=0, vmax=1,
                          alpha=0.75, aspect=aspect, interpolation="nearest")
        if dn.max() > min(CONTOUR_LEVELS):
            ax.contour(dn, levels=CONTOUR_LEVELS, colors=["cyan", "lime"], linewidths=0.8, origin="lower")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.02, 0.5, left, transform=ax.transAxes, color="white", va="center", fontsize=11)
        ax.text(0.95, 0.5, right, transform=ax.transAxes, color="white", va="center", fontsize=11)
    bar = fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01)
    bar.set_label("tumor cell density (contours at " + ", ".join(str(v) for v in CONTOUR_LEVELS) + ")")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_atomically(fig, Path(path), dpi)
