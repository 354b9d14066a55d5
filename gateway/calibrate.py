"""`soil-gateway calibrate`: one point of a probe's calibration, measured from its live readings.

A capacitive probe is calibrated by holding it in two known states, dry soil (or air) and saturated soil (or
water), and noting what it reads in each (hardware/calibrate.md). Rather than asking a grower to read numbers off a
serial monitor, the command watches the probe's readings as the running gateway stores them for a short window and
takes their mean; it refuses a window with too few readings and warns when they still drift (a probe just pushed
into soil takes a while to settle). The point goes to the `calibrations` table (gateway/moisture.py), where the
`moisture` view picks it up: from then on, and for the past when it is the probe's first calibration, readings show
in percent.

Why read the database and not the serial port: the port belongs to the running gateway (one reader per port), and
the rows it stored are exactly what the percentages will be computed from.
"""

import math
import time

MIN_READINGS = 3
DRIFT_WARN = 0.02      # a standard deviation above 2 % of the calibrated span (or of the mean, for a first point)


class CalibrationError(Exception):
    """A calibration that cannot be taken, with the reason in words."""


class Measurement:
    """The readings of one window: their count, mean, range and spread."""

    def __init__(self, values):
        self.values = list(values)
        self.n = len(self.values)
        self.mean = sum(self.values) / self.n if self.n else None
        self.low = min(self.values) if self.n else None
        self.high = max(self.values) if self.n else None
        self.stdev = (math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (self.n - 1))
                      if self.n > 1 else 0.0)

    def drifting(self, span=None):
        """Whether the readings spread too much to trust their mean: relative to the span between dry and wet when
        the other point is known, else to the mean itself."""
        scale = abs(span) if span else abs(self.mean or 0)
        return bool(scale) and self.stdev > DRIFT_WARN * scale

    def describe(self):
        return "mean of %d readings, %d..%d, standard deviation %.1f" % (self.n, self.low, self.high, self.stdev)


def measure(calibrations, board, seconds, progress=None, clock=time.monotonic, sleep=time.sleep):
    """The probe's live readings stored during the next `seconds` seconds, as a Measurement. `progress(n)` is called
    about once a second with the count so far."""
    marker = calibrations.reading_marker()
    deadline = clock() + seconds
    values = []
    while True:
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(1.0, left))
        values = calibrations.newest_raw(board, marker)
        if progress is not None:
            progress(len(values))
    values = calibrations.newest_raw(board, marker)
    if len(values) < MIN_READINGS:
        raise CalibrationError(
            "%d live reading(s) of %s in %.0f s, at least %d are needed: is the board plugged in and the gateway "
            "running and writing (soil-gateway status)? A board sampling slowly needs a longer --seconds"
            % (len(values), board, seconds, MIN_READINGS))
    return Measurement(values)


def other_point(calibrations, board, probe, point):
    """The raw value of the other point of the probe's newest calibration, or None."""
    rows = [r for r in calibrations.list(board) if r[2] == probe]
    if not rows:
        return None
    newest = max(rows, key=lambda r: (r[5], r[0]))
    return newest[4] if point == "dry" else newest[3]


def describe_calibration(row):
    cal_id, board, probe, dry, wet, since, _created = row
    return "calibration %d of %s probe %d: dry %s, wet %s, in effect from %s" % (
        cal_id, board, probe, "-" if dry is None else dry, "-" if wet is None else wet,
        "the first reading" if str(since).startswith("1000-01-01") else "%s UTC" % since)


def format_list(rows):
    """`calibrate --list`: one line per calibration, oldest first per probe."""
    if not rows:
        return "no calibrations (soil-gateway calibrate BOARD --dry, then --wet)"
    lines = ["%-4s %-12s %-5s %-8s %-8s %s" % ("id", "board", "probe", "dry", "wet", "in effect from (UTC)")]
    for cal_id, board, probe, dry, wet, since, _created in rows:
        lines.append("%-4d %-12s %-5d %-8s %-8s %s" % (
            cal_id, board, probe, "-" if dry is None else dry, "-" if wet is None else wet,
            "the first reading" if str(since).startswith("1000-01-01") else since))
    return "\n".join(lines)

