"""A board's settings, and the one function every port calls to assemble a board from them and its HAL.

Why one function: the MicroPython port, the CircuitPython port and the virtual board used to build the same
objects three times, and drifted (one port could not set the hand-back, another hard-coded a margin). Now each port
only reads its settings its own way and builds its hardware (its HAL); `build()` does the rest, the same on every
board.

Every setting is settable the same way on every port, under the same name:

| port | where | spelling |
| --- | --- | --- |
| MicroPython | `config.json` | `"interval_ms": 1000` |
| CircuitPython | `settings.toml` | `SOIL_INTERVAL_MS = 1000` |
| virtual board | `python -m tools.sim.vboard` | `--interval-ms 1000` |

The HAL a port hands in has these attributes (docs/ARCHITECTURE.md has the interfaces): `uid` (the hardware's
unique id as lower-case hex, uid_hex below), `i2c` (the DS1307's bus), `adc`, `card`, `flash` (a folder of the
board's own flash filesystem with the card's interface, for the fallback journal; None when the port has none or it
is read-only: readings then wait in RAM while the card is away), `link`, `led` (or None), `ticks_ms`, `ticks_diff`; a standby's also `hb_target`, `hb_mem` and `hb_end_write` (a memory-mode I2C target over `hb_mem`, a bytearray of heartbeat.MEM_SIZE, and the trigger its irq
takes for the end of a write), a master's `hb_i2c` (the controller on the pair's wire).
"""

from soil import codec, heartbeat
from soil.bootcount import next_boot
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import DEFAULT_MAX_BYTES, POLICIES, Journal

# (name, default, what it is). A default of None means required.
SETTINGS = (
    ("board", None, "the board id: 1-32 characters from A-Z a-z 0-9 _ -, unique per board (default: b- and the "
                    "last 8 hex digits of the board's hardware uid)"),
    ("role", codec.SINGLE, "single, or master / standby for a redundant pair"),
    ("interval_ms", 1000, "milliseconds between samples"),
    ("window", 24, "reading frames in flight before the gateway must acknowledge"),
    ("status_interval_ms", 10000, "milliseconds between status frames"),
    ("journal_max", DEFAULT_MAX_BYTES, "bytes of SD card the journal may use"),
    ("full_policy", POLICIES[0], "drop_oldest or drop_newest, when the journal is full"),
    ("hb_address", heartbeat.ADDRESS, "the standby's I2C target address on the pair's wire"),
    ("hb_interval_ms", 3000, "milliseconds between the master's beats"),
    ("hb_timeout_ms", 10000, "a standby asks the gateway after this long without a beat"),
    ("witness_timeout_ms", 3000, "and takes over when the gateway has not answered within this"),
    ("handback_after_ms", 9000, "beats this long before an active standby hands back"),
    ("handback_margin_s", 7, "the hand-back time is this many seconds ahead"),
    ("witness_recheck_ms", 30000, "an active standby without beats asks the gateway again this often"),
)
NAMES = tuple(entry[0] for entry in SETTINGS)
CHOICES = {"role": codec.ROLES, "full_policy": POLICIES}   # the settings that take one of a few words


def uid_hex(raw):
    """A hardware unique id (bytes: machine.unique_id(), microcontroller.cpu.uid) as the hello's lower-case hex
    (soil.codec.valid_uid), its last codec.UID_MAX digits when it is longer. Start-up only, so it lives here."""
    text = ""
    for b in raw:
        text += "0123456789abcdef"[b >> 4] + "0123456789abcdef"[b & 15]
    return text[-codec.UID_MAX:]


def default_board_id(uid):
    """The board id of a board whose settings name none: `b-` and the last 8 hex digits of its uid (the digits
    that differ between boards of one batch: the serial part of a MAC, of a flash chip's id)."""
    return "b-" + uid[-8:]


def settings(get, spell=None, uid=None):
    """Every setting, checked: a dict name -> value. `get(name, default)` looks a setting up the port's way (None
    when it is not set); `spell(name)` is how a user writes its name there, for the error messages; `uid` the
    board's hardware uid (hex), whose default_board_id is the board id when none is set. Raises
    ValueError naming the setting for a missing board id or a value that is not allowed."""
    if spell is None:
        spell = _as_is
    out = {}
    for name, default, meaning in SETTINGS:
        what = spell(name)
        if name == "board" and uid is not None:
            default = default_board_id(uid)
        value = get(name, default)
        if value is None:
            value = default           # config.json's `"board": null`: the default (the uid's)
        if value is None:
            raise ValueError("%s is not set: %s" % (what, meaning))
        if isinstance(default, int):
            try:
                if isinstance(value, bool):
                    raise ValueError()
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError("%s must be a whole number, got %r" % (what, value))
            if value <= 0:
                raise ValueError("%s must be above 0, got %d" % (what, value))
        elif not isinstance(value, str):
            raise ValueError("%s must be text, got %r" % (what, value))
        choices = CHOICES.get(name)
        if choices is not None and value not in choices:
            raise ValueError("%s must be one of %s, got %r" % (what, ", ".join(choices), value))
        out[name] = value
    if not codec.valid_board_id(out["board"]):
        raise ValueError("%s must be 1-32 characters from A-Z a-z 0-9 _ -, got %r" % (spell("board"), out["board"]))
    if not 0x08 <= out["hb_address"] <= 0x77:
        raise ValueError("%s must be an I2C address from 0x08 to 0x77, got %d" % (spell("hb_address"),
                                                                                out["hb_address"]))
    return out


def _as_is(name):
    return name


def unknown(names):
    """The names in `names` that are not settings (a typo would otherwise leave a setting at its default)."""
    return [n for n in names if n not in NAMES]


def build(s, hal, log=None):
    """The board's Collector from settings `s` (from `settings()`) and `hal`: the DS1307 driver (which checks the
    chip answers), the journal, the boot counter and, for a pair, the role on its wire. Call `start()` on it."""
    rtc = DS1307(hal.i2c)        # raises "no DS1307 at 0x68: check SDA/SCL and pull-ups"
    # The collector keeps what the card refuses (on the flash, else in RAM) and counts what it loses: the journal
    # must not count a refused record too (soil.collector).
    journal = Journal(hal.card, max_bytes=s["journal_max"], policy=s["full_policy"])
    boot, stores = next_boot(rtc, hal.card)
    if not stores and log is not None:
        log("boot number %d kept nowhere (no NVRAM, no card): identities may repeat" % boot)
    role = s["role"]
    pair = None
    if role == codec.STANDBY:
        from soil.standby import Mailbox, StandbyRole    # only the role this board plays is loaded
        target = getattr(hal, "hb_target", None)
        if target is None:
            raise ValueError("role standby needs the pair's wire: an I2C target (hardware/pair-wiring.md)")
        pair = StandbyRole(Mailbox(target, hal.hb_mem, hal.hb_end_write), timeout_ms=s["hb_timeout_ms"],
                           witness_timeout_ms=s["witness_timeout_ms"], beat_interval_ms=s["hb_interval_ms"],
                           handback_after_ms=s["handback_after_ms"], handback_margin_s=s["handback_margin_s"],
                           recheck_ms=s["witness_recheck_ms"])
    elif role == codec.MASTER:
        from soil.master import MasterRole
        wire = getattr(hal, "hb_i2c", None)
        if wire is None:
            raise ValueError("role master needs the pair's wire: an I2C controller (hardware/pair-wiring.md)")
        pair = MasterRole(wire, s["hb_address"], s["hb_interval_ms"], s["handback_margin_s"], s["hb_timeout_ms"])
    return Collector(s["board"], boot, rtc, hal.adc, journal, hal.link, hal.ticks_ms, hal.ticks_diff, pair=pair,
                     interval_ms=s["interval_ms"], window=s["window"], status_interval_ms=s["status_interval_ms"],
                     led=hal.led, log=log, uid=hal.uid,
                     flash=getattr(hal, "flash", None))
