"""Method settings as dataclasses: every default, unit and check of a method in one place.

A method's ``Settings`` is a frozen dataclass derived from :class:`MethodSettings`. Each field is declared with
:func:`setting`, which records its unit, a one-line help text, whether the command line shows it as a flag, and
its simple checks (choices, a minimum, "0 or at least"). Cross-field rules go in the class's ``check`` method.
Checks run when the object is made, so a Python caller, the command line (``personalize --method M``) and a
``--settings settings.json`` file all get the same :class:`~TumorPersonalizationLib.errors.InputError`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

from ..errors import InputError
from ..plan_defaults import DEFAULT_MARGIN_MM


def setting(default, help: str, *, unit: str = "", flag: bool = False, choices: tuple | None = None,
            minimum: float | None = None, maximum: float | None = None, zero_or_at_least: float | None = None, positive: bool = False):
    """A dataclass field of a method's Settings, with what the CLI, ``methods --json`` and the checks need.

    Parameters
    ----------
    default
        The default value (immutable).
    help : str
        One line for ``--help`` and ``methods``.
    unit : str
        The value's unit ("mm", "1/day", ...), "" for none.
    flag : bool
        Shown by ``personalize`` as ``--name-with-dashes``; otherwise reachable through ``--settings``.
    choices, minimum, maximum, zero_or_at_least, positive
        Checks: one of ``choices``; ``>= minimum``; ``<= maximum``; 0 or ``>= zero_or_at_least``; ``> 0`` (None passes all).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "unit": unit, "flag": flag, "choices": choices, "minimum": minimum, "maximum": maximum,
        "zero_or_at_least": zero_or_at_least, "positive": positive})


def display_name(field: dataclasses.Field) -> str:
    """How messages name a setting: ``samples (--samples)`` for flags, ``refine_evaluations`` otherwise."""
    return f"{field.name} (--{field.name.replace('_', '-')})" if field.metadata.get("flag") else field.name


def _base_type(field: dataclasses.Field, hints: dict):
    """The field's type without ``| None``: (type, optional)."""
    kind = hints[field.name]
    if kind is typing.Any:
        return object, True
    args = typing.get_args(kind)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return kind, False


def _coerce(field: dataclasses.Field, kind, value):
    """``value`` as ``kind`` (JSON gives ints for floats, strings for paths), or InputError naming the field."""
    name = display_name(field)
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name} must be a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if kind is Path:
        if not isinstance(value, (str, Path)):
            raise InputError(f"{name} must be a file path, got {value!r}")
        return Path(value)
    if kind is str and not isinstance(value, str):
        raise InputError(f"{name} must be text, got {value!r}")
    return value


def _check_field(field: dataclasses.Field, value) -> None:
    meta, name = field.metadata, display_name(field)
    if meta["choices"] is not None and value not in meta["choices"]:
        raise InputError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise InputError(f"{name} must be at least {meta['minimum']:g}, got {value}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise InputError(f"{name} must be at most {meta['maximum']:g}, got {value}")
    if meta["zero_or_at_least"] is not None and value != 0 and value < meta["zero_or_at_least"]:
        raise InputError(f"{name} must be 0 (skip) or at least {meta['zero_or_at_least']:g}, got {value}")
    if meta["positive"] and not value > 0:
        raise InputError(f"{name} must be positive, got {value}")


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """Settings every method has. Subclasses add theirs with :func:`setting` and may override :meth:`check`."""

    margin_mm: float = setting(DEFAULT_MARGIN_MM, "standard-plan margin around the T1Gd core", unit="mm",
                               flag=True, minimum=0.0)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind, optional = _base_type(field, hints)
            if value is None:
                if not optional:
                    raise InputError(f"{display_name(field)} must be given, got None")
                continue
            value = _coerce(field, kind, value)
            object.__setattr__(self, field.name, value)
            _check_field(field, value)
        self.check()

    def check(self) -> None:
        """Rules between fields; raise InputError naming the settings involved."""

    @classmethod
    def from_mapping(cls, values: dict, source: str = "settings"):
        """Settings from a mapping of field names (a ``--settings`` JSON file, keyword arguments); unknown names are
        refused with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{source}: unknown setting(s) {', '.join(unknown)}; this method's settings are "
                             f"{', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def describe(cls) -> list[dict]:
        """Each field as a JSON-ready dict: name, default, unit, help, type, flag, choices."""
        hints = typing.get_type_hints(cls)
        out = []
        for field in dataclasses.fields(cls):
            kind, optional = _base_type(field, hints)
            default = field.default
            out.append({"name": field.name, "default": str(default) if isinstance(default, Path) else default,
                        "unit": field.metadata["unit"], "help": field.metadata["help"],
                        "type": "any" if kind is object else kind.__name__ + (" or null" if optional else ""),
                        "flag": f"--{field.name.replace('_', '-')}" if field.metadata["flag"] else None,
                        "choices": list(field.metadata["choices"]) if field.metadata["choices"] else None})
        return out

    def as_dict(self) -> dict:
        """JSON-ready values (paths and other objects as text), for reports."""
        def plain(value):
            return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def read_settings_file(path) -> dict:
    """The JSON object in a ``--settings`` file, or InputError naming the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--settings {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--settings {path}: cannot read it as JSON ({error})") from None
    if not isinstance(values, dict):
        raise InputError(f"--settings {path}: expected a JSON object of setting names and values")
    return values
