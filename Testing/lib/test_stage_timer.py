"""StageTimer: consecutive stages, each timed against the wall clock."""
import time

from TumorPersonalizationLib.stage_timer import StageTimer


def test_consecutive_stages_are_timed_separately_into_the_given_dict():
    seconds = {"kept": 1.0}
    timer = StageTimer(seconds)
    timer.start("long")
    time.sleep(0.2)
    timer.start("short")  # ends "long"
    assert set(seconds) == {"kept", "long"}
    time.sleep(0.02)
    timer.stop()
    timer.stop()  # nothing running: no effect
    assert set(seconds) == {"kept", "long", "short"}
    assert seconds["long"] >= 0.19 and 0.015 <= seconds["short"] < seconds["long"]
