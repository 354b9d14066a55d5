"""A pseudo-terminal in front of a board process: what the virtual boards that run in node share.

node has no openpty, so the Python side of a virtual board (tools/sim/mpboard, tools/sim/vpico) opens the pair,
starts node with pipes, and relays bytes between the pty master and node's stdin/stdout. The gateway and mpremote
open the slave as they open /dev/ttyACM0.
"""

import os
import select
import tty


def open_pty():
    master, slave = os.openpty()
    tty.setraw(slave)            # no echo, no newline translation: bytes are bytes
    return master, slave, os.ttyname(slave)


def relay(master, node, stop):
    """Bytes pty master -> node stdin, node stdout -> pty master, until node exits or `stop` is set."""
    n_in = node.stdin.fileno()
    n_out = node.stdout.fileno()
    os.set_blocking(master, False)
    to_pty = bytearray()
    while not stop.is_set():
        wlist = [master] if to_pty else []
        r, w, _ = select.select([master, n_out], wlist, [], 0.5)
        if n_out in r:
            data = os.read(n_out, 65536)
            if not data:
                return                   # the board stopped
            to_pty += data
        if master in r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""               # EIO: nobody has the slave open right now (we keep it open, so rare)
            if data:
                try:
                    os.write(n_in, data)
                except BrokenPipeError:
                    return
        if to_pty and (master in w or not wlist):
            try:
                n = os.write(master, bytes(to_pty))
                del to_pty[:n]
            except BlockingIOError:
                pass
