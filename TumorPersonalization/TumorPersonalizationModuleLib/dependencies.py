"""Python packages the Lib needs inside Slicer, installed at first use (never at import time).

torch comes from the PyTorch extension (``EXTENSION_DEPENDS PyTorch``; its ``PyTorchUtils`` module picks the
build that fits the machine's GPU). Everything else is pinned in ``Resources/requirements.txt``, the same pins as
the repository's ``pyproject.toml`` (a test keeps the two equal).
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def readPins(path: Path = REQUIREMENTS) -> dict:
    """``{distribution name (lower case): version}`` for every ``name==version`` line of a requirements file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def missingRequirements(path: Path = REQUIREMENTS) -> list:
    """``name==version`` strings that are not installed at exactly that version."""
    missing = []
    for name, version in readPins(path).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            missing.append(f"{name}=={version}")
    return missing


def ensureTorch() -> None:
    """torch through the PyTorch extension (asks the user before a large download); raises when unavailable."""
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("torch is missing: install the PyTorch extension (Extensions Manager) and restart "
                           "Slicer") from None
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
        raise RuntimeError("torch was not installed (the installation was declined or failed)")


def ensureRequirements(path: Path = REQUIREMENTS) -> list:
    """Install what :func:`missingRequirements` lists with Slicer's installer; returns what was installed.

    Uses ``slicer.pydeps.pip_ensure`` (Slicer 5.11 and later; ``slicer.packaging`` in some previews) where present,
    else ``slicer.util.pip_install``.
    """
    missing = missingRequirements(path)
    if not missing:
        return []
    import slicer

    for moduleName in ("pydeps", "packaging"):
        try:
            helper = __import__(f"slicer.{moduleName}", fromlist=["pip_ensure"])
        except ImportError:
            continue
        if hasattr(helper, "pip_ensure"):
            if hasattr(helper, "load_requirements"):
                helper.pip_ensure(helper.load_requirements(str(path)), requester="TumorPersonalization")
            else:
                helper.pip_ensure(missing)
            return missing
    slicer.util.pip_install(missing)
    return missing
