"""Progress reports and cancellation for long computations, in one callable that methods call."""
from __future__ import annotations

from ..errors import Cancelled


class Progress:
    """``progress(fraction, message=None)`` for a method's stages: forwards to the caller's callback and raises
    :class:`~TumorPersonalizationLib.errors.Cancelled` once ``cancel`` (a ``threading.Event``) is set.

    Parameters
    ----------
    callback : callable(fraction, message) or None
        The caller's progress display (a CLI bar, Slicer's progress bar); fraction in [0, 1].
    cancel : threading.Event or None
        Set it from another thread to stop the method at its next progress report.
    """

    def __init__(self, callback=None, cancel=None):
        self._callback = callback
        self._cancel = cancel

    def __call__(self, fraction: float, message: str | None = None) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("cancelled")
        if self._callback is not None:
            self._callback(fraction, message)

    def part(self, start: float, stop: float, message: str | None = None):
        """A callback(fraction[, message]) that maps [0, 1] onto [start, stop] of this one."""
        def report(fraction: float, text: str | None = None) -> None:
            self(start + (stop - start) * fraction, text if text is not None else message)
        return report
