"""gateway/outagelog.py: a database outage's log lines are bounded, whatever its messages do; its end is said.

Found in make demo-galera: while a site was cut off its gateway retried every 250 ms and each failure's message
differed from the last (a far node's error flipped between "cannot connect" and "lost connection"), so the log got
4 warnings a second of 600 characters each. And a second outage with the same message as the first was never
logged at all (the writer kept the last message after recovery and logged only a different one)."""

import logging

from gateway.dbconn import DatabaseConfigError, DatabaseUnavailable
from gateway.outagelog import OutageLog


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "test.outage"]


def outage(clock, **kw):
    return OutageLog(logging.getLogger("test.outage"), "database", clock=clock, **kw)


def test_an_outage_whose_message_flips_logs_its_first_lines_then_one_a_minute(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    clock = Clock()
    o = outage(clock, first=3, repeat_s=60)
    for i in range(4 * 60 * 3):                   # 3 minutes of retries every 250 ms, two messages in turn
        o.failed(DatabaseUnavailable("node 2 down (%s)" % ("cannot connect", "lost connection")[i % 2], None))
        clock.t += 0.25
    said = lines(caplog)
    assert said[:2] == ["database: node 2 down (cannot connect)", "database: node 2 down (lost connection)"]
    assert 3 <= len(said) <= 4, said             # the first two, then one line in each later minute
    assert "more times since the last line" in said[-1], said
    o.recovered()
    assert lines(caplog)[-1] == "database is back after 180.0 s"


def test_a_second_outage_with_the_same_message_is_logged_again(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    clock = Clock()
    o = outage(clock)
    err = DatabaseUnavailable("cannot connect (error 2003)", None)
    o.failed(err)
    clock.t += 5
    o.recovered()
    clock.t += 600
    o.failed(err)
    assert lines(caplog) == ["database: cannot connect (error 2003)", "database is back after 5.0 s",
                             "database: cannot connect (error 2003)"]


def test_a_failure_of_another_kind_is_logged_at_once(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    clock = Clock()
    o = outage(clock, first=1)
    o.failed(DatabaseUnavailable("cannot connect", None))
    o.failed(DatabaseUnavailable("lost connection", None))         # same kind, after `first` lines: quiet
    o.failed(DatabaseConfigError("access denied for soil_gateway"), logging.ERROR)
    assert lines(caplog) == ["database: cannot connect",
                             "database: access denied for soil_gateway (failed 1 more times since the last line)"]
    assert caplog.records[-1].levelno == logging.ERROR


def test_no_outage_no_recovery_line(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    outage(Clock()).recovered()
    assert lines(caplog) == []
