"""Wall-clock seconds of the consecutive stages of a long computation, for reports and benchmarks."""
from __future__ import annotations

import time


class StageTimer:
    """Times named stages that run one after another.

    ``start(name)`` ends the stage that is running (if any) and begins ``name``; ``stop()`` ends it. Seconds are
    written into ``seconds`` (a dict, rounded to ms) as each stage ends, so a report holding that dict is complete
    up to the last finished stage even when the computation fails half-way.
    """

    def __init__(self, seconds: dict | None = None):
        self.seconds = {} if seconds is None else seconds
        self._name, self._started = None, 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._started = name, time.perf_counter()

    def stop(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._started, 3)
            self._name = None
