"""Why a board is caching, as the dashboard and `soil-gateway status` say it (gateway/web/state.py): derived from a
real BoardProtocol fed real frames (the protocol tests' rig and clock) and a port's status, in the order in which
the causes hide each other."""

from gateway.web.state import PUBLISHING_WINDOW_S, board_view
from tests.test_gateway_protocol import Rig, reading, status


class Port:
    """A transport's status() and nothing else (gateway.transport.SerialTransport.status's keys)."""

    def __init__(self, open_=True, error=None):
        self.open, self.error = open_, error

    def status(self):
        return {"port_open": self.open, "port_error": self.error, "opens": 1, "open_failures": 0,
                "open_warnings_suppressed": 0}


def view(rig, port=None, db_ok=True, db_error=None, silent_after_s=30.0):
    return board_view(rig.p, port or Port(), db_ok, db_error, rig.clock(), silent_after_s)


def test_online_with_the_last_status_frame_and_hello():
    rig = Rig()
    rig.hello()
    rig.feed(status())
    v = view(rig)
    assert (v["state"], v["cause"], v["why"]) == ("online", None, None)
    assert (v["board"], v["fw"], v["role"], v["boot"], v["pending"], v["card"], v["clock"]) == \
        ("bed-1", "1.0", "single", 3, 4, "ok", "ok")
    assert "collector" not in v


def test_the_causes_in_the_order_they_hide_each_other():
    rig = Rig()
    rig.hello()
    rig.feed(status())
    assert view(rig, db_ok=False, db_error="cannot connect")["why"] == "database down: cannot connect"
    rig.clock.t += 31
    v = view(rig, db_ok=False)
    assert (v["state"], v["cause"]) == ("caching", "silent") and v["why"].startswith("board silent: no frame for 31")
    v = view(rig, port=Port(False, "[Errno 2] No such file"), db_ok=False)
    assert (v["cause"], v["why"]) == ("port", "port gone: [Errno 2] No such file")
    assert v["pending"] == 4          # the last thing the board said is still shown


def test_a_board_that_never_spoke_is_silent():
    rig = Rig()
    v = view(rig)
    assert v["cause"] == "silent" and v["why"] == "board silent: no frame since the port opened"
    assert v["pending"] is None and v["board"] is None


def test_a_replay_draining_the_card_and_who_publishes_in_a_pair():
    rig = Rig()
    rig.hello(role="master")
    assert view(rig)["collector"] == "standing by"
    rig.feed(reading(1, flags="C"))             # from the card: a replay
    v = view(rig)
    assert v["replaying"] and v["collector"] == "publishing"
    rig.feed(reading(2, flags="L"))
    assert not view(rig)["replaying"]
    rig.clock.t += PUBLISHING_WINDOW_S + 1
    rig.feed(status())
    assert view(rig)["collector"] == "standing by"


GALERA_DOWN = ("no synced Galera node in the primary component: 127.0.0.1:60211 Initialized, non-Primary, "
               "wsrep_ready=OFF; 127.0.0.1:40351 down (database soil_gateway@127.0.0.1:40351 unavailable: lost "
               "connection to the server (error 2013: Lost connection to MySQL server during query ([Errno 104] "
               "Connection reset by peer))); 127.0.0.1:38001 down (database soil_gateway@127.0.0.1:38001 "
               "unavailable: cannot connect (is the server running and the port right?) (error 2003: Can't "
               "connect to MySQL server on '127.0.0.1' ([Errno 104] Connection reset by peer)))")


def test_a_board_waiting_for_the_database_says_so_briefly():
    """Every board's card repeated the database's whole message (600 characters on a Galera cluster, seen in
    make demo-galera's screenshot); the Database panel has it once. A board says the gist, in one short line."""
    rig = Rig()
    rig.hello()
    rig.feed(status())
    why = view(rig, db_ok=False, db_error=GALERA_DOWN)["why"]
    assert why.startswith("database down: no synced Galera node in the primary component")
    assert len(why) <= 140 and "Errno" not in why, why
    why = view(rig, db_ok=False, db_error="database soil_gateway@127.0.0.1:40097 unavailable: cannot connect (is "
                                          "the server running and the port right?) (error 2003: ...)")["why"]
    assert why == "database down: database soil_gateway@127.0.0.1:40097 unavailable: cannot connect", why


def test_a_port_no_board_has_spoken_on_is_not_caching():
    """A configured port that has never had a board on it (a spare, or a board not plugged in yet) holds no
    readings the gateway knows of: it is `unseen`, not `caching`."""
    rig = Rig()
    v = view(rig, port=Port(False, "[Errno 2] No such file"))
    assert (v["state"], v["cause"]) == ("unseen", "port")
    assert view(rig)["state"] == "unseen"
    rig.hello()
    v = view(rig, port=Port(False, "[Errno 2] No such file"))
    assert (v["state"], v["cause"]) == ("caching", "port")      # it spoke: now its readings wait on its card


def test_the_node_a_gateway_wrote_to_is_last_used_once_it_is_unusable():
    """`soil-gateway status` said "in use" for the node the gateway last wrote to after it had left the quorum (seen
    in make demo-galera's cut-off site): in use only while usable, "last used" after."""
    from gateway.web import report
    node = {"server": "127.0.0.1:3306", "in_use": True, "usable": False, "error": None, "state": "Initialized",
            "status": "non-Primary", "size": 1, "ready": "OFF"}
    assert "last used" in report.node_line(node, 15) and "in use" not in report.node_line(node, 15)
    assert " in use " in report.node_line(dict(node, usable=True, state="Synced", status="Primary", ready="ON"), 15)
