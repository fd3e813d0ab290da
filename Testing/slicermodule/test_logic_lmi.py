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


def test_mass_effect_outputs_become_a_transform_and_deformed_maps(module, tmp_path):
    # What the Logic loads from a mass-effect run's folder, read the way Slicer reads such files: the displacement
    # file as a grid transform whose resampling direction (FromParent) moves a point by the stored vector.
    import slicer

    from TumorPersonalizationLib.forward import DisplacementField
    from TumorPersonalizationLib.imaging import Geometry, write_volume
    from TumorPersonalizationModuleLib import outputs
    from TumorPersonalizationModuleLib.nodes import volumeFromNode

    geometry = Geometry((12, 10, 8), (2.0, 2.5, 3.0), (10.0, -20.0, 5.0), (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0, 0, 1))
    i, j, k = np.meshgrid(*(np.arange(n) for n in geometry.shape), indexing="ij")
    ras = np.stack([0.1 * i, -0.2 * j + 0.5, 0.05 * k * i], axis=-1)  # a smooth field, linear along each axis
    DisplacementField(ras, geometry).write(tmp_path / "displacement.nii.gz")
    wm = np.random.default_rng(0).uniform(0, 1, geometry.shape).astype(np.float32)
    for name, array in (("wm", wm), ("gm", 1 - wm), ("csf", np.zeros_like(wm))):
        write_volume(Volume(array, geometry), tmp_path / f"deformed_{name}.nii.gz")
    result = outputs.ResultNodes()
    loaded = outputs.loadMassEffect(tmp_path, "case", result)
    transform = loaded[0]
    assert transform.IsA("vtkMRMLGridTransformNode") and transform.GetName() == "case displacement"
    index = np.array([5.0, 4.0, 3.0])
    point = geometry.index_to_ras(index)
    moved = transform.GetTransformFromParent().TransformPoint(list(point))
    np.testing.assert_allclose(moved, point + ras[5, 4, 3], atol=1e-4)
    maps = {node.GetName(): volumeFromNode(node) for node in loaded[1:]}
    assert set(maps) == {"case deformed WM", "case deformed GM", "case deformed CSF"}
    np.testing.assert_allclose(maps["case deformed WM"].array, wm, atol=1e-6)
    result.remove()
    assert all(node.GetScene() is None for node in loaded)
    assert not slicer.mrmlScene.GetNodesByClass("vtkMRMLGridTransformNode").GetNumberOfItems()
