"""Mass-effect model against independent truths: the Fisher-Kolmogorov solver at gamma = 0, conservation by the
advection, the closed-form displacement of a radially loaded ball, monotonicity in gamma, no folding, and the bad
inputs a user can give (Python and command line)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from TumorPersonalizationLib.cli import main
from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.forward import Seed, simulate_mass_effect
from TumorPersonalizationLib.imaging import Volume, read_volume, write_volume
from TumorPersonalizationLib.imaging.tissue import TissueMaps
from TumorPersonalizationLib.models import elasticity
from TumorPersonalizationLib.models import fisher_kolmogorov as fk
from TumorPersonalizationLib.models import mass_effect as me

from conftest import phantom_tissue

SPACING = (3.0, 3.0, 3.0)
SHAPE = (30, 32, 28)
SEED = (10.0, 16.0, 14.0)  # white matter, off-centre


@pytest.fixture(scope="module")
def small_head():
    return phantom_tissue(shape=SHAPE, spacing_mm=SPACING)


@pytest.fixture(scope="module")
def domain(small_head):
    return me.MassEffectDomain(*small_head, SPACING)


def test_gamma_zero_is_the_fisher_kolmogorov_model(small_head, domain):
    wm, gm, csf = small_head
    reference = fk.Domain(wm, gm, SPACING).simulate(0.4, 0.06, [60.0, 200.0], SEED)
    result = domain.simulate(0.4, 0.06, [60.0, 200.0], SEED, 0.0)
    assert np.abs(result.density - reference).max() < 1e-4
    assert result.stats["elasticity_solves"] == 0 and not result.displacement_mm.any()
    np.testing.assert_allclose(result.wm[0], wm, atol=1e-6)  # tissue left where it was


def test_advection_conserves_tumor_and_tissue_mass(domain):
    """rho = 0 and D = 0: only the mechanics moves c and the tissue, by growing displacements; sums are kept."""
    c = domain.fk.seed_density(SEED)
    c = np.where(domain.fk.inside_padded, np.minimum(1.0, 40.0 * c), 0.0).astype(np.float32)  # a bigger lump
    mechanics = domain.start_mechanics()
    before = [float(c.sum(dtype=np.float64))] + [float(m.sum(dtype=np.float64)) for m in mechanics.tissue]
    for gamma in (2000.0, 5000.0, 10000.0):
        domain.mechanics_step(c, gamma, mechanics)
    after = [float(c.sum(dtype=np.float64))] + [float(m.sum(dtype=np.float64)) for m in mechanics.tissue]
    assert np.abs(mechanics.u).max() > 0.5  # it did move (mm)
    np.testing.assert_allclose(after, before, rtol=1e-5)
    assert c.min() >= 0 and mechanics.tissue.min() >= 0
    domain.start_mechanics()  # restore the domain's tissue for the other tests


@pytest.mark.parametrize("factor, tolerance", [(1, 0.05), (2, 0.10)])
def test_radial_displacement_matches_the_closed_form(factor, tolerance):
    """Homogeneous ball, u = 0 on its surface, c(r) = exp(-(r / 12 mm)^2): within 5 % away from centre and surface
    on the solver's grid; within 10 % when solved on a grid twice as coarse (4 mm, 3 voxels per load width) and
    interpolated back, as the model does by default.

    The discrete wall sits at the first outside voxel centres, half a voxel beyond the body on average.
    """
    n, h, radius = 44, 2.0, 40.0
    axis = (np.arange(n) - (n - 1) / 2.0) * h
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    body = r < radius
    lam, mu = elasticity.lame_from_young(2100.0, 0.4)
    profile = lambda s: np.exp(-(s / 12.0) ** 2)  # noqa: E731
    gamma = 50.0  # a small load: strains of ~1e-2, the linear theory's regime
    tight = elasticity.SolverSettings(tolerance=1e-5)
    if factor == 1:
        solver = elasticity.ElasticBody(body, (h,) * 3, (lam, mu))
        u, report = solver.solve(np.full(body.shape, lam), np.full(body.shape, mu), solver.load(profile(r), gamma),
                                 settings=tight)
    else:
        grid = elasticity.Coarsening(body, factor)
        solver = elasticity.ElasticBody(grid.body, (h * factor,) * 3, (lam, mu))
        coarse_u, report = solver.solve(np.full(grid.shape, lam), np.full(grid.shape, mu),
                                        solver.load(grid.restrict(profile(r)), gamma), settings=tight)
        u = grid.prolong(coarse_u)
    assert report.relative_residual <= 1e-5
    radial = (u[0] * x + u[1] * y + u[2] * z) / np.maximum(r, 1e-9)
    expected = elasticity.radial_displacement_closed_form(r, profile, radius + h / 2, gamma, lam, mu)
    where = body & (r > 8.0) & (r < radius - 8.0)
    error = np.abs(radial[where] - expected[where]).max() / np.abs(expected[where]).max()
    assert error < tolerance
    tangential = np.sqrt(np.maximum((u ** 2).sum(axis=0) - radial ** 2, 0.0))
    assert tangential[where].max() < tolerance * np.abs(expected[where]).max()  # the field is radial


def test_displacement_grows_with_gamma_and_never_folds(domain):
    peaks = []
    for gamma in (1000.0, 4000.0, me.GAMMA_MAX_PA):
        result = domain.simulate(0.4, 0.06, 200.0, SEED, gamma)
        magnitude = np.sqrt((result.displacement_mm ** 2).sum(axis=0))
        peaks.append(float(magnitude.max()))
        assert me.jacobian_determinant(result.displacement_mm, SPACING, sign=-1.0).min() > 0.0
        # Tumor and tissue stay probabilities in the outputs.
        assert 0.0 <= result.density.min() and result.density.max() <= 1.0
        assert (result.wm + result.gm + result.csf).max() <= 1.0 + 1e-5
    assert peaks[0] > 0.05 and peaks[0] < peaks[1] < peaks[2]


def test_fast_growth_at_the_largest_gamma_does_not_fold(domain):
    """The prior's corner: the fastest spread and growth, a year, the strongest push."""
    result = domain.simulate(1.5, 0.2, 365.0, SEED, me.GAMMA_MAX_PA)
    assert me.jacobian_determinant(result.displacement_mm, SPACING, sign=-1.0).min() > 0.0


def test_materials_give_the_documented_lame_values():
    lam, mu = me.DEFAULT_MATERIALS["wm"].lame_pa
    assert lam == pytest.approx(3000.0) and mu == pytest.approx(750.0)
    lam, mu = me.DEFAULT_MATERIALS["csf"].lame_pa
    assert lam == pytest.approx(11.36, abs=0.01) and mu == pytest.approx(45.45, abs=0.01)


@pytest.mark.parametrize("call, message", [
    (lambda: me.check_gamma(-1.0), "gamma = -1 Pa is outside"),
    (lambda: me.check_gamma(1e9), "is outside [0,"),
    (lambda: me.materials_with({"csf": me.Material(100.0, 0.5)}), "Poisson's ratio 0.5"),
    (lambda: me.materials_with({"tumor": me.Material(0.0, 0.3)}), "Young's modulus 0 Pa"),
    (lambda: me.materials_with({"bone": me.Material(1e4, 0.3)}), "the tissues are"),
])
def test_bad_mechanics_parameters_are_refused(call, message):
    with pytest.raises(InputError, match=None) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_model_needs_a_csf_map(small_head):
    wm, gm, _ = small_head
    tissue = TissueMaps(Volume.from_array(wm, SPACING), Volume.from_array(gm, SPACING))
    with pytest.raises(InputError, match="needs a CSF map"):
        simulate_mass_effect(tissue, 0.4, 0.06, 100.0, Seed(voxel=SEED), gamma_pa=1000.0)
    with pytest.raises(InputError, match="needs a CSF map"):
        me.MassEffectDomain(wm, gm, None, SPACING)


# ------------------------------------------------------------------------------------------------ command line
GEOMETRY = dict(spacing_mm=SPACING, origin_ras_mm=(10.0, -20.0, 5.0), direction_ras=(-1, 0, 0, 0, 1, 0, 0, 0, 1))


@pytest.fixture
def tissue_files(tmp_path, small_head):
    return {name: write_volume(Volume.from_array(array, **GEOMETRY), tmp_path / f"{name}.nii.gz")
            for name, array in zip(("wm", "gm", "csf"), small_head)}


def cli_args(files, out, *extra, days=60):
    return ["simulate", "--dw", "0.4", "--rho", "0.06", "--days", days, "--seed-voxel", *SEED, "--wm", files["wm"],
            "--gm", files["gm"], "--csf", files["csf"], "--out", out, "--quiet", *extra]


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_density_displacement_field_and_deformed_tissue(tmp_path, tissue_files, capsys):
    out, field, tissue_dir = tmp_path / "d.nii.gz", tmp_path / "u.nii.gz", tmp_path / "tissue"
    code, stdout, _ = run(cli_args(tissue_files, out, "--model", "mass-effect", "--gamma", "5000",
                                   "--material", "csf=150,0.1", "--displacement-out", field,
                                   "--tissue-out", tissue_dir), capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["model"] == "mass-effect" and summary["gamma_pa"] == 5000.0
    assert summary["materials"]["csf"]["young_pa"] == 150.0 and summary["materials"]["wm"]["lambda_pa"] == 3000.0
    assert summary["max_displacement_mm"] > 0.2 and summary["elasticity"]["solves"] > 0

    image = sitk.ReadImage(str(field))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetPixelID() == sitk.sitkVectorFloat64
    assert np.allclose(image.GetSpacing(), SPACING) and np.allclose(image.GetOrigin(), (-10.0, 20.0, 5.0))
    # Resampling the healthy WM through the field must give about the deformed WM the model wrote (resampling
    # convention, LPS components, the input's direction matrix); the field with the opposite sign must not.
    healthy = sitk.ReadImage(str(tissue_files["wm"]), sitk.sitkFloat64)
    deformed_wm = sitk.GetArrayFromImage(sitk.ReadImage(str(tissue_dir / "wm.nii.gz"), sitk.sitkFloat64))
    baseline = np.abs(sitk.GetArrayFromImage(healthy) - deformed_wm).sum()

    def mismatch(sign):
        flipped = sitk.GetImageFromArray(sign * sitk.GetArrayFromImage(image), isVector=True)
        flipped.CopyInformation(image)
        warped = sitk.Resample(healthy, healthy, sitk.DisplacementFieldTransform(flipped), sitk.sitkLinear, 0.0)
        return np.abs(sitk.GetArrayFromImage(warped) - deformed_wm).sum() / baseline

    assert mismatch(1.0) < 0.7 and mismatch(-1.0) > 1.2

    for name in ("wm", "gm", "csf"):
        deformed, original = read_volume(tissue_dir / f"{name}.nii.gz"), read_volume(tissue_files[name])
        assert deformed.geometry.is_close(original.geometry)
        assert deformed.array.sum() == pytest.approx(original.array.sum(), rel=0.02)  # moved, not lost
    assert read_volume(out).array.max() <= 1.0


@pytest.mark.parametrize("extra, message", [
    (["--model", "mass-effect", "--gamma", "-5"], "gamma = -5 Pa is outside"),
    (["--model", "mass-effect"], "needs --gamma"),
    (["--model", "mass-effect", "--gamma", "100", "--material", "wm=2100,0.5"], "Poisson's ratio"),
    (["--model", "mass-effect", "--gamma", "100", "--material", "wm=2100"], "expected TISSUE=E,NU"),
    (["--model", "mass-effect", "--gamma", "100", "--material", "skull=1e4,0.3"], "the tissues are"),
    (["--gamma", "100"], "--gamma is for --model mass-effect"),
    (["--model", "mass-effect", "--gamma", "100", "--solver", "surrogate"], "--solver numerical"),
    (["--model", "mass-effect", "--gamma", "100", "--displacement-out", "u.txt"], "unsupported extension"),
])
def test_cli_bad_input_gives_one_line_and_exit_2(tmp_path, tissue_files, capsys, extra, message):
    out = tmp_path / "d.nii.gz"
    code, _, err = run(cli_args(tissue_files, out, *extra), capsys)
    assert code == 2 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_needs_csf_with_own_tissue_maps(tmp_path, tissue_files, capsys):
    args = cli_args(tissue_files, tmp_path / "d.nii.gz", "--model", "mass-effect", "--gamma", "100")
    at = args.index("--csf")
    del args[at:at + 2]
    code, _, err = run(args, capsys)
    assert code == 2 and "needs --csf" in err and len(err.strip().splitlines()) == 1
