#!/usr/bin/env python3
"""Render an axial slice the way the module shows results: T1, density overlay, CTV outlines (no GPU, no window).

    .venv/bin/python Scripts/make_screenshot.py [--out Resources/Screenshots/overview.png]
    .venv/bin/python Scripts/make_screenshot.py --result output/example_lmi \
        --out Resources/Screenshots/example_patient_lmi.png

With ``--result``, the picture shows the example patient (Resources/ExamplePatient) with a personalization the CLI
wrote to that folder (``python3 dev.py demo`` writes output/example_lmi), through the slice with the T1Gd centre.

Runs on slicer-core (``trame-slicer[standalone]``) with the test stand-in for the application. The picture comes
from Slicer's own slice pipeline (vtkMRMLSliceLogic: reslice, colour map, threshold transparency, label outlines,
blending), not from a GL render, so it shows what the slice views compose but not what the displayable managers
draw on top (segment outlines are drawn here through a labelmap in the label layer, as Slicer's label outline
mode draws them). The case is synthetic: a tumor grown with the Lib's solver in the bundled atlas (Dw 0.3 mm²/day,
rho 0.03 /day, 250 days, seed RAS (-25, -10, 20)), plans from the Lib; the density and CTVs are loaded into nodes
by the module's own loaders (TumorPersonalizationModuleLib.outputs).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT, ROOT / "Testing", ROOT / "TumorPersonalization"):
    sys.path.insert(0, str(_folder))

SEED_RAS = (-25.0, -10.0, 20.0)


def make_case_files(folder: Path):
    """Density and plans of a synthetic tumor in the bundled atlas, written as the CLI writes them."""
    import numpy as np

    from TumorPersonalizationLib import radiotherapy
    from TumorPersonalizationLib.forward import Seed, simulate
    from TumorPersonalizationLib.imaging.io import write_volume
    from TumorPersonalizationLib.imaging.tissue import load_tissue_maps
    from TumorPersonalizationLib.personalize import brain_mask_from_tissue

    tissue = load_tissue_maps()
    density = simulate(tissue, 0.3, 0.03, 250.0, Seed(ras_mm=SEED_RAS))
    core = density.like(density.array >= 0.6)
    plans = radiotherapy.make_plans(density, core, brain_mask=brain_mask_from_tissue(tissue), csf=tissue.csf)
    write_volume(density, folder / "density.nii.gz")
    write_volume(plans.standard.like(plans.standard.array.astype(np.uint8)), folder / "ctv_standard.nii.gz")
    write_volume(plans.model.like(plans.model.array.astype(np.uint8)), folder / "ctv_model.nii.gz")
    return tissue, core


def example_case_files(result_dir: Path):
    """The example patient's T1 and T1Gd core, and the centre of the core (RAS mm), for a CLI result folder."""
    import numpy as np

    from TumorPersonalizationLib.imaging.io import read_volume

    example = ROOT / "Resources" / "ExamplePatient"
    t1 = read_volume(example / "t1.nii.gz")
    core = read_volume(example / "t1gd.nii.gz")
    t1 = t1.like(t1.array.astype(np.float32) / np.float32(255))
    centre = core.geometry.index_to_ras(np.argwhere(core.array > 0).mean(axis=0))
    return t1, core.like(core.array > 0), tuple(centre)


def render(out: Path, result_dir: Path | None = None) -> Path:
    import numpy as np
    import slicer
    import slicer_standin
    import vtk

    from TumorPersonalizationModuleLib import nodes, outputs

    slicer_standin.install()
    with tempfile.TemporaryDirectory() as tmp:
        if result_dir is None:
            folder = Path(tmp)
            tissue, core = make_case_files(folder)
            background, centre, title = tissue.background, SEED_RAS, "atlas T1"
        else:
            folder = result_dir
            background, core, centre = example_case_files(result_dir)
            title = "example patient T1"
        t1 = nodes.addVolumeNode(background, title)
        result = outputs.ResultNodes()
        outputs.loadDensity(folder, "density", result)
        outputs.loadPlans(folder, "CTVs", "isoVolume", 15.0, core, result)
    sliceNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode")
    sliceNode.SetLayoutName("Red")
    sliceNode.SetOrientation("Axial")
    sliceNode.SetDimensions(560, 640, 1)
    sliceNode.SetFieldOfView(150.0, 150.0 * 640 / 560, 1.0)
    sliceNode.SetUseLabelOutline(True)
    sliceNode.JumpSliceByCentering(*centre)
    composite = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    composite.SetLayoutName("Red")
    composite.SetBackgroundVolumeID(t1.GetID())
    composite.SetForegroundVolumeID(result.density.GetID())
    composite.SetForegroundOpacity(0.6)
    t1.GetDisplayNode().SetAutoWindowLevel(False)
    t1.GetDisplayNode().SetWindowLevelMinMax(0.0, 1.0)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(slicer.app.applicationLogic())
    logic.SetMRMLScene(slicer.mrmlScene)
    logic.SetSliceNode(sliceNode)
    logic.SetSliceCompositeNode(composite)

    def layer_rgba(connection):
        logic.UpdateImageData()
        producer = connection.GetProducer()
        producer.Update()
        image = producer.GetOutputDataObject(connection.GetIndex())
        dims = image.GetDimensions()
        array = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        return np.flipud(array.reshape(dims[1], dims[0], -1)).copy()  # VTK rows run bottom-up

    rgb = layer_rgba(logic.GetImageDataConnection())[:, :, :3]
    # Each segment's outline on its own (a merged labelmap would hide boundaries where segments overlap).
    segmentation = result.ctv.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(result.ctv, [segmentId], labelmap, t1)
        composite.SetLabelVolumeID(labelmap.GetID())
        outline = layer_rgba(logic.GetNthLayerImageDataConnection(2))[:, :, 3] > 0  # label layer
        color = np.array(segmentation.GetSegment(segmentId).GetColor()) * 255
        rgb[outline] = color.astype(np.uint8)
        composite.SetLabelVolumeID(None)
        slicer.mrmlScene.RemoveNode(labelmap)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_png(rgb, out, result.volumesMl, "Axial slice through the seed" if result_dir is None
               else "Example patient (LMI),\naxial, T1Gd centre")
    return out


def _write_png(rgb, path: Path, volumes_ml: dict, caption: str):
    """The slice with a small legend (colour bar and CTV volumes), via matplotlib (a Lib dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    from TumorPersonalizationModuleLib import outputs

    fig = Figure(figsize=(7.6, 6.4), dpi=100)
    ax = fig.add_axes([0.0, 0.0, 0.72, 1.0])
    ax.imshow(rgb)
    ax.set_axis_off()
    ax.text(8, 20, "R", color="white", fontsize=12)  # radiological view: patient's right on the left
    ax.text(rgb.shape[1] - 20, 20, "L", color="white", fontsize=12)
    text = [caption, "", "density (overlay, c >= 0.01)"]
    for name, ml in volumes_ml.items():
        text.append(f"{name}:\n    {ml:.1f} mL")
    fig.text(0.74, 0.95, "\n".join(text), va="top", fontsize=8.5, color="white")
    heat = LinearSegmentedColormap.from_list("heat", ["black", "red", "yellow", "white"])
    bar = fig.add_axes([0.76, 0.35, 0.03, 0.35])
    import numpy as np

    bar.imshow(np.linspace(1, 0, 256)[:, None], aspect="auto", cmap=heat, extent=(0, 1, 0, 1))
    bar.set_xticks([])
    bar.set_ylabel("tumor cell density", fontsize=8, color="white")
    bar.tick_params(colors="white", labelsize=7)
    legend = [(outputs.STANDARD_COLOR, "standard CTV"), (outputs.PERSONALIZED_COLOR, "personalized CTV"),
              (outputs.CORE_COLOR, "core")]
    for i, (color, label) in enumerate(legend):
        fig.text(0.76, 0.25 - 0.04 * i, "■ " + label, color=color, fontsize=9)
    fig.savefig(path, facecolor="black")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "Resources" / "Screenshots" / "overview.png")
    parser.add_argument("--result", type=Path, help="a CLI result folder of the example patient (see above)")
    args = parser.parse_args(argv)
    print(render(args.out, args.result))


if __name__ == "__main__":
    main()
