"""StageTimer: consecutive stages, each timed against the wall clock."""
import time

from TumorPersonalizationLib.stage_timer import StageTimer


def test_consecutive_stages_are_timed_separately_into_the_given_dict():
    seconds = {"kept": 1.0}
    timer = StageTimer(seconds)
    timer.start("short")
    time.sleep(0.02)
    timer.start("long")  # ends "short"
    assert set(seconds) == {"kept", "short"}
    time.sleep(0.1)
    timer.stop()
    timer.stop()  # nothing running: no effect
    assert set(seconds) == {"kept", "short", "long"}
    assert 0.015 <= seconds["short"] < 0.09 <= seconds["long"] < 1.0
