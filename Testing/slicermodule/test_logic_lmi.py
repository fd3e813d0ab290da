"""MRML tier, Learn-Morph-Infer: the example patient (SRI24 anatomy, 2 mm, flipped axis) as nodes through the Logic.

The tumor was grown in SRI24's own tissue maps with known parameters, so the density node is judged against that
truth at the same physical positions: a geometry error anywhere between nodes, files, registration and back would
put the density in the wrong place.
"""
import numpy as np
from slicer_fixtures import module, scene  # noqa: F401 (fixtures; also puts the module on sys.path)

from TumorPersonalizationLib.imaging import Volume
from TumorPersonalizationLib.imaging.io import resample
from TumorPersonalizationLib.metrics import dice_at_levels

from cases import add_volume, assert_unchanged, segmentation_from_mask, snapshot
from example_case import example_patient


def test_lmi_density_and_ctvs_land_on_the_true_tumor(module, tmp_path):
    from TumorPersonalizationModuleLib.nodes import volumeFromNode

    case = example_patient()
    nodes = {"t1Volume": add_volume(case["t1"], "T1"),
             "t1gdLesion": segmentation_from_mask(case["t1gd"], "T1Gd"),
             "flairLesion": add_volume(case["flair"], "FLAIR", "vtkMRMLLabelMapVolumeNode")}
    before = snapshot(nodes)
    logic = module.TumorPersonalizationLogic()
    result = logic.run(module.PersonalizationInputs(**nodes), module.PersonalizationSettings(method="lmi"),
                       workDir=tmp_path / "work", timeoutS=400)
    assert_unchanged(before, snapshot(nodes))

    density = volumeFromNode(result.density)
    on_truth_grid = resample(density, case["truth"].geometry, "linear")
    dice = dice_at_levels(on_truth_grid, case["truth"], (0.1, 0.5))
    assert dice["0.1"] >= 0.6 and dice["0.5"] >= 0.5, dice

    segments = result.ctv.GetSegmentation()
    names = {segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())}
    assert {"Standard CTV (15 mm)", "T1Gd core"} <= names and len(names) == 3
    table = result.table.GetTable()
    quantities = [table.GetValueByName(r, "Quantity").ToString() for r in range(table.GetNumberOfRows())]
    assert {"mu1", "mu2", "Dw", "rho", "T"} <= set(quantities)
    assert result.charts == []  # no posterior for a point estimate
    assert isinstance(density, Volume) and np.all(density.array >= 0) and density.array.max() > 0.9
    # By default LMI simulates in tissue maps segmented from the T1, and the panel shows them.
    assert result.report["tissue"]["source"].startswith("segmented from")
    maps = {node.GetName().split()[-1]: volumeFromNode(node) for node in result.others
            if node.IsA("vtkMRMLScalarVolumeNode")}
    assert set(maps) == {"WM", "GM", "CSF"}
    total = maps["WM"].array + maps["GM"].array + maps["CSF"].array
    assert maps["WM"].geometry.is_close(case["t1"].geometry) and total.max() <= 1.0 + 1e-5
    assert (maps["WM"].array > 0.5).sum() > 0.2 * (total > 0.5).sum()  # a brain's share of white matter


def test_lmi_in_the_atlas_shows_no_tissue_maps(module, tmp_path):
    case = example_patient()
    nodes = {"t1Volume": add_volume(case["t1"], "T1"),
             "t1gdLesion": segmentation_from_mask(case["t1gd"], "T1Gd"),
             "flairLesion": add_volume(case["flair"], "FLAIR", "vtkMRMLLabelMapVolumeNode")}
    logic = module.TumorPersonalizationLogic()
    result = logic.run(module.PersonalizationInputs(**nodes), module.PersonalizationSettings(method="lmiAtlas"),
                       workDir=tmp_path / "work", timeoutS=400)
    assert result.report["tissue"]["source"] == "bundled atlas" and result.report["refinement"] is None
    assert not [node for node in result.others if node.IsA("vtkMRMLScalarVolumeNode")]
    assert result.density is not None
