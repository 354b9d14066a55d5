"""gateway.clock.ClockKeeper with a fake clock and a timer the test fires: when a board's clock is set (flaw F3), and
that the T frame carries the second boundary it goes out on."""

import threading

import pytest

from gateway import frames
from gateway.clock import ClockKeeper
from soil import utc
from tests.fake_clock import T0, Clock, Timers


def iso(t):
    return utc.iso(utc.from_epoch(int(t)))


def keeper(tolerance_s=2.0):
    clock, timers = Clock(), Timers()
    return ClockKeeper(tolerance_s, now=clock, timer=timers), clock, timers


@pytest.mark.parametrize("board_offset_s, state, needed", [
    (0, "ok", False),
    (2, "ok", False),                    # the tolerance itself is still right
    (-2, "ok", False),
    (3, "ok", True),
    (-3, "ok", True),
    (0, "unset", True),                  # running but never set by a gateway
    (0, "halted", True),                 # clock-halt bit or a failed battery
    (0, "invalid", True),
])
def test_when_a_clock_needs_setting(board_offset_s, state, needed):
    k, clock, _ = keeper()
    # The board reports whole seconds: compare against the gateway's whole second, as the keeper would see it.
    clock.t = float(int(T0))
    assert k.needs_setting(iso(clock.t + board_offset_s), state) is needed


def test_an_unreadable_board_time_needs_setting():
    k, _, _ = keeper()
    assert k.needs_setting("2026-02-30T00:00:00Z", "ok")


def test_the_t_frame_goes_out_on_the_next_second_boundary_carrying_that_second():
    k, _, timers = keeper()
    sent = []
    assert k.check("2000-01-01T00:00:00Z", "halted", sent.append)
    (t,) = timers.pending
    assert t.delay == pytest.approx(0.75) and t.daemon
    assert sent == [] and k.setting
    timers.fire()
    assert [frames.decode(f) for f in sent] == [(frames.SETTIME, (iso(T0 + 1),))]
    assert not k.setting


def test_one_setting_at_a_time():
    k, clock, timers = keeper()
    sent = []
    assert k.check("2000-01-01T00:00:00Z", "halted", sent.append)
    assert not k.check("2000-01-01T00:00:01Z", "halted", sent.append)   # the next status, before the T is out
    assert len(timers.pending) == 1
    timers.fire()
    clock.t += 10
    assert k.check(iso(clock.t + 60), "ok", sent.append)                 # set, but drifted again later
    assert len(timers.pending) == 1


def test_a_right_clock_is_left_alone():
    k, clock, timers = keeper()
    assert not k.check(iso(T0), "ok", lambda f: pytest.fail("no T for a right clock"))
    assert timers.pending == [] and not k.setting


def test_the_default_timer_is_a_real_thread_timer():
    """With threading.Timer, the frame arrives from the timer's thread (waited for, not slept on)."""
    got = threading.Event()
    sent = []

    def send(frame):
        sent.append(frame)
        got.set()
    k = ClockKeeper(2.0)
    assert k.check("2000-01-01T00:00:00Z", "halted", send)
    assert got.wait(5)
    kind, (when,) = frames.decode(sent[0])
    assert kind == frames.SETTIME and when.endswith("Z")
