"""Writing output files so that a failure or an interruption never leaves a half-written file behind."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on failure removed.

    ``suffix`` is the temporary file's ending (writers such as SimpleITK pick the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(data, path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path, ".json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def check_manifest(path, settings: dict, *, create: bool = False, missing: str | None = None) -> None:
    """Refuse a dataset folder whose shards were made with other generation ``settings`` than the ones asked for.

    ``path`` is the folder's manifest (a JSON file of the settings that made its shards). When it is absent: with
    ``create`` it is written (a new dataset); else, with ``missing`` (what to do about it), an InputError, and
    without, the folder is accepted as it is (datasets made before manifests existed).
    """
    from .errors import InputError

    path = Path(path)
    wanted = json.loads(json.dumps(settings))  # tuples -> lists, as the file holds them
    if not path.exists():
        if create:
            with atomic_path(path, ".json") as tmp:
                Path(tmp).write_text(json.dumps(wanted, indent=1, sort_keys=True))
        elif missing is not None:
            raise InputError(f"{path.parent} has no {path.name}: {missing}")
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"dataset manifest {path}: cannot read it ({error})") from error
    differing = sorted(key for key in set(wanted) | set(recorded) if wanted.get(key) != recorded.get(key))
    if differing:
        raise InputError(f"dataset {path.parent} was made with other settings than this config ({', '.join(differing)} "
                         "differ): use a new folder, or the config that made it")
