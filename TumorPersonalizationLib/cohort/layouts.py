"""Finding a cohort's patients in the layouts researchers already have, and reading one patient's inputs.

A cohort is a folder of patient folders (or a CSV manifest). Each patient folder is recognised on its own, so a
cohort may mix layouts:

``ours``
    Files named by input: ``t1``, ``t1gd``, ``flair`` (binary masks), optional ``pet``, ``wm``, ``gm``, ``csf``,
    ``recurrence``; any suffix SimpleITK reads (``.nii.gz``, ``.nii``, ``.nrrd``, ...).
``brats``
    BraTS names, ``<id>_t1``, ``<id>_t1ce`` (or ``_t1gd``), ``<id>_flair``, ``<id>_seg`` (up to BraTS 2021) or
    ``<id>-t1n``, ``<id>-t1c``, ``<id>-t2f``, ``<id>-seg`` (BraTS 2023). The label map ``seg`` gives both masks:
    the T1Gd mask is the core (necrosis + enhancing: labels 1, 3, 4, which covers 1/2/4 and 1/2/3 labelings), the
    FLAIR mask is every label > 0. The T1 image is ``t1`` / ``t1n`` (else ``t1ce`` / ``t1c``); the FLAIR image is not
    read (the masks come from ``seg``). ``_wm``, ``_gm``, ``_csf``, ``_pet``, ``_recurrence`` are read when present.
``predict-gbm``
    The PREDICT-GBM benchmark's container input, ``Patient-XXXXX/XXXXX-{gm,wm,csf,tumorseg,pet}.nii.gz``, with
    ``tumorseg`` a label map read as BraTS' ``seg`` (PREDICT-GBM labels 1 necrotic, 2 edema, 3 enhancing).
``manifest``
    A CSV file with a ``patient`` column and one column per input (``t1``, ``t1gd``, ``flair``, ..., or ``seg`` for a
    label map); paths relative to the CSV's folder; an empty cell means "not given".

Finding patients reads no image (so listing 500 patients is instant); a patient's images are read by the worker
that personalizes it (:func:`read_case`).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..personalization import INPUTS
from ..plan_defaults import DEFAULT_CORE_LABELS

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File endings read as images (those :func:`..imaging.io.read_volume` reads; listed here because importing that
module loads SimpleITK, and finding patients reads no image)."""

IMAGE = "image"
CORE = "core"
LESION = "lesion"
"""How a source becomes an input: the file as it is, the core labels of a label map, or every label > 0."""

_BRATS_ROLES = {"t1": "t1", "t1n": "t1", "t1ce": "t1ce", "t1gd": "t1ce", "t1c": "t1ce", "flair": "flair",
                "t2f": "flair", "t2": "t2", "t2w": "t2", "seg": "seg", "wm": "wm", "gm": "gm", "csf": "csf",
                "pet": "pet", "recurrence": "recurrence"}
"""BraTS file endings (after ``_`` or ``-``) -> what the file is."""
_BRATS_NAME = re.compile(r"^(?P<id>.+?)[_-](?P<role>" + "|".join(sorted(_BRATS_ROLES, key=len, reverse=True))
                         + r")$")
_PREDICT_GBM_NAME = re.compile(r"^(?P<id>.+)-(?P<role>gm|wm|csf|tumorseg|pet)$")
PREDICT_GBM_PREFIX = "Patient-"
"""PREDICT-GBM patient folders are ``Patient-<id>``; the density is written to ``<id>.nii.gz``."""


@dataclass(frozen=True)
class Source:
    """Where one input of a patient comes from.

    Attributes
    ----------
    path : Path
        The image file.
    select : str
        :data:`IMAGE` (the file is the input), :data:`CORE` (voxels with a core label of a label map) or
        :data:`LESION` (voxels with any label > 0).
    """

    path: Path
    select: str = IMAGE

    def describe(self, role: str) -> str:
        """How messages name this input: ``flair P01/P01_seg.nii.gz (labels > 0)``."""
        how = {IMAGE: "", CORE: f" (labels {', '.join(map(str, DEFAULT_CORE_LABELS))})", LESION: " (labels > 0)"}
        return f"{role} {self.path}{how[self.select]}"


@dataclass(frozen=True)
class Patient:
    """One patient of a cohort: its name (the folder's, or the manifest's ``patient``), layout and input sources."""

    name: str
    layout: str
    sources: dict = field(default_factory=dict)
    missing: tuple = ()
    """Required inputs that were not found (the patient is reported as failed, not run)."""

    def paths(self) -> dict:
        """{role: file} of the inputs (a label map serving two roles appears twice)."""
        return {role: source.path for role, source in self.sources.items()}


@dataclass(frozen=True)
class Cohort:
    """What :func:`find_patients` found: the patients, and a line per folder it could not use."""

    source: Path
    patients: tuple
    skipped: tuple = ()

    def describe(self) -> list[str]:
        """Lines saying what was found (printed before a run starts)."""
        layouts = {}
        for patient in self.patients:
            layouts[patient.layout] = layouts.get(patient.layout, 0) + 1
        kinds = ", ".join(f"{n} {layout}" for layout, n in sorted(layouts.items()))
        lines = [f"found {len(self.patients)} patient(s) in {self.source} ({kinds or 'none'})"]
        lines += [f"  {p.name}: missing {', '.join(p.missing)} (reported as failed)" for p in self.patients
                  if p.missing]
        lines += [f"  skipped {line}" for line in self.skipped]
        return lines


def _image_stem(path: Path) -> str | None:
    """The file name without its image suffix, lower case; None for files that are not images."""
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return None


def _images(folder: Path) -> dict:
    """{stem: path} of the images directly in ``folder`` (hidden files left out)."""
    found = {}
    for path in sorted(folder.iterdir()):
        stem = _image_stem(path)
        if stem is not None and path.is_file() and not path.name.startswith("."):
            found.setdefault(stem, path)
    return found


def _ours(images: dict) -> dict:
    return {role: Source(images[role]) for role in INPUTS if role in images}


def _from_label_map(sources: dict, label_map: Path | None) -> None:
    """T1Gd = the core labels, FLAIR = every label > 0 of one label map (BraTS ``seg``, PREDICT-GBM ``tumorseg``)."""
    if label_map is not None:
        sources["t1gd"], sources["flair"] = Source(label_map, CORE), Source(label_map, LESION)


def _brats(images: dict) -> dict:
    by_role = {}
    for stem, path in images.items():
        match = _BRATS_NAME.match(stem)
        if match:
            by_role.setdefault(_BRATS_ROLES[match["role"]], path)
    sources = {}
    t1 = by_role.get("t1", by_role.get("t1ce"))  # LMI registers a T1 (or T1Gd) image to the atlas
    if t1 is not None:
        sources["t1"] = Source(t1)
    _from_label_map(sources, by_role.get("seg"))
    for role in ("pet", "wm", "gm", "csf", "recurrence"):
        if role in by_role:
            sources[role] = Source(by_role[role])
    return sources


def _predict_gbm(images: dict) -> dict:
    by_role = {}
    for stem, path in images.items():
        match = _PREDICT_GBM_NAME.match(stem)
        if match:
            by_role[match["role"]] = path
    sources = {role: Source(by_role[role]) for role in ("wm", "gm", "csf", "pet") if role in by_role}
    _from_label_map(sources, by_role.get("tumorseg"))
    return sources


def classify(folder: Path) -> tuple[str, dict] | None:
    """(layout, {role: Source}) of one patient folder, or None when it holds no image this module recognises."""
    images = _images(folder)
    if any(_PREDICT_GBM_NAME.match(stem) and stem.endswith("-tumorseg") for stem in images):
        return "predict-gbm", _predict_gbm(images)
    if any(stem in INPUTS for stem in images):
        return "ours", _ours(images)
    if any(_BRATS_NAME.match(stem) for stem in images):
        return "brats", _brats(images)
    return None


def _missing(sources: dict) -> tuple:
    """The inputs every method needs that ``sources`` lacks (a method may need more: :func:`for_method`)."""
    return tuple(role for role in ("t1gd", "flair") if role not in sources)


def find_patients(source) -> Cohort:
    """The patients of a cohort folder (each sub-folder that holds images; or the folder itself when it holds
    images and no sub-folder does) or of a CSV manifest.

    Raises
    ------
    InputError
        ``source`` does not exist, a manifest cannot be read, or no patient was found.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_manifest(source)
    if not source.exists():
        raise InputError(f"--input {source}: no such folder or CSV manifest")
    if not source.is_dir():
        raise InputError(f"--input {source}: expected a folder of patient folders or a CSV manifest (.csv)")
    patients, skipped = [], []
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = classify(folder)
        if found is None:
            skipped.append(f"{folder.name}: no image named as in our layout, BraTS or PREDICT-GBM")
            continue
        layout, sources = found
        patients.append(Patient(folder.name, layout, sources, _missing(sources)))
    if not patients and classify(source) is not None:
        layout, sources = classify(source)
        patients.append(Patient(source.name, layout, sources, _missing(sources)))
        skipped = []
    if not patients:
        raise InputError(f"--input {source}: no patient found (a patient folder holds t1gd.nii.gz and "
                         f"flair.nii.gz, BraTS *_seg.nii.gz, or PREDICT-GBM XXXXX-tumorseg.nii.gz)")
    return Cohort(source, tuple(patients), tuple(skipped))


MANIFEST_COLUMNS = ("patient",) + INPUTS + ("seg",)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def read_manifest(path) -> Cohort:
    """The patients of a CSV manifest (see the module docstring); InputError names the file, row and column."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: spreadsheets write a BOM
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"--input {path}: cannot read the manifest ({error})") from None
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if "patient" not in columns or unknown:
        raise InputError(f"--input {path}: the manifest needs a 'patient' column and input columns among "
                         f"{', '.join(MANIFEST_COLUMNS[1:])}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    patients, seen = [], set()
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        name = row.get("patient", "")
        if not _SAFE_NAME.match(name):
            raise InputError(f"--input {path}, line {line}: patient {name!r} is not usable as a folder name "
                             f"(letters, digits, . _ + -)")
        if name in seen:
            raise InputError(f"--input {path}, line {line}: patient {name} appears twice")
        seen.add(name)
        sources, absent = {}, []
        if row.get("seg"):
            _from_label_map(sources, path.parent / row["seg"])
        for role in INPUTS:
            if row.get(role):
                sources[role] = Source(path.parent / row[role])
        for role, source in sources.items():
            if not source.path.is_file():
                absent.append(f"{role} ({source.path} not found)")
        patients.append(Patient(name, "manifest", sources, tuple(absent) + _missing(sources)))
    if not patients:
        raise InputError(f"--input {path}: the manifest lists no patient")
    return Cohort(path, tuple(patients), ())


def for_method(cohort: Cohort, required: tuple, reads: tuple) -> Cohort:
    """The cohort as a method sees it: inputs it does not read dropped (a BraTS T1 is not used by TMCMC), and
    those it needs but a patient lacks added to the patient's ``missing``."""
    patients = []
    for patient in cohort.patients:
        sources = {role: source for role, source in patient.sources.items() if role in reads}
        lacking = tuple(role for role in required if role not in sources and role not in patient.missing)
        patients.append(Patient(patient.name, patient.layout, sources, patient.missing + lacking))
    return Cohort(cohort.source, tuple(patients), cohort.skipped)


def read_case(patient: Patient):
    """The patient's :class:`~..personalization.Case` (every check of ``Case.from_volumes``); InputError names
    the file and, for a label map, how it was read."""
    import numpy as np

    from .. import radiotherapy
    from ..imaging.io import read_volume
    from ..personalization import Case

    names = {role: source.describe(role) for role, source in patient.sources.items()}
    read = {}  # a label map serving as T1Gd and FLAIR is read once
    volumes = {}
    for role, source in patient.sources.items():
        if source.path not in read:
            read[source.path] = read_volume(source.path, names[role])
        image = read[source.path]
        if source.select == CORE:
            image = radiotherapy.core_mask(image, DEFAULT_CORE_LABELS, name=names[role])
        elif source.select == LESION:
            labels = np.asarray(image.array)
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                raise InputError(f"{names[role]}: not a label map (non-integer or non-finite values)")
            image = image.like(labels > 0)
        volumes[role] = image
    return Case.from_volumes(**volumes, names=names, paths=patient.paths())
