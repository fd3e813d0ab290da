"""What makes a patient's folder "finished", and how it becomes finished in one step.

A finished patient folder holds the method's outputs (:meth:`..personalization.Personalization.write`) and
``cohort.json``: the method, its settings, a fingerprint of every input file and the patient's summary row. The
folder is assembled in a hidden staging folder beside it and renamed into place, so a patient's folder is either
absent, the previous complete result, or the new complete result; never half-written, whatever interrupts the run
(Ctrl-C, a killed worker, a full disk).

A rerun skips a patient whose ``cohort.json`` records the same method, the same settings and the same input
files; a changed setting or input file recomputes it. Input files are compared by size and modification time,
and, when only the time differs (a copied cohort), by content (SHA-256), so copying a cohort to a cluster does
not recompute it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

RECORD_NAME = "cohort.json"
_STAGING_MARKERS = (".partial-", ".old-")


def fingerprint(paths: dict) -> dict:
    """{role: {"file", "bytes", "mtime_ns", "sha256"}} of a patient's input files."""
    out = {}
    for role, path in sorted(paths.items()):
        stat = Path(path).stat()
        out[role] = {"file": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                     "sha256": _sha256(path)}
    return out


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_file(recorded: dict, path: Path) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != recorded.get("bytes"):
        return False
    if stat.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    return _sha256(path) == recorded.get("sha256")


def read_record(folder) -> dict | None:
    """The ``cohort.json`` of a patient folder, or None when there is none (or it cannot be read)."""
    try:
        return json.loads((Path(folder) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def finished_row(folder, method: str, settings: dict, paths: dict) -> dict | None:
    """The recorded summary row when ``folder`` holds a finished result of ``method`` with ``settings`` on the
    input files ``paths`` ({role: file}); None when the patient must be (re)computed."""
    record = read_record(folder)
    if record is None or record.get("method") != method or record.get("settings") != settings:
        return None
    inputs = record.get("inputs", {})
    if set(inputs) != set(paths):
        return None
    if not all(_same_file(inputs[role], Path(path)) for role, path in paths.items()):
        return None
    return record.get("row")


def staging_folder(out_root: Path, patient: str) -> Path:
    """A new hidden folder in ``out_root`` to assemble the patient's result in (same file system: rename works)."""
    out_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{patient}.partial-", dir=out_root))


def publish(staging: Path, target: Path) -> None:
    """Make ``staging`` the folder ``target`` in one rename; an earlier result there is moved aside first and
    removed after (between the two renames ``target`` is absent, never mixed)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_staging(out_root: Path) -> list[Path]:
    """Remove staging folders an interrupted run left in ``out_root``; returns them.

    Only one cohort run may write to a results folder at a time: a second one would remove the first's staging.
    """
    removed = []
    if not out_root.is_dir():
        return removed
    for path in out_root.iterdir():
        if path.is_dir() and path.name.startswith(".") and any(m in path.name for m in _STAGING_MARKERS):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
