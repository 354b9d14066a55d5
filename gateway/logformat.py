"""The gateway's log lines: for a terminal or a file, and for journald.

Under journald (gateway.sdnotify.journal_stream_is_stderr) each line starts with its syslog priority in the
sd-daemon convention (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug, sd-daemon(3)), so `journalctl -p warning`
selects by level, and carries no time of its own: journald stamps every line. An event is always one line (a
traceback's lines are joined with " | "), because journald makes an entry of every line it reads.
"""

import logging

TERMINAL_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
JOURNAL_FORMAT = "%(name)s %(levelname)s %(message)s"


def priority(levelno):
    """The syslog priority of a logging level: <3> for ERROR and above, <4> WARNING, <6> INFO, <7> DEBUG."""
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(JOURNAL_FORMAT)

    def format(self, record):
        text = super().format(record)
        return "<%d>%s" % (priority(record.levelno), " | ".join(line for line in text.splitlines() if line))


def formatter(journald):
    return JournalFormatter() if journald else logging.Formatter(TERMINAL_FORMAT)
