"""What each flavour sends: MariaDB 10.x, MySQL 8.0 before and after the 8.0.22/8.0.23/8.0.26 renames, 8.4.
No server needed; the statements are checked as the text and arguments PyMySQL would receive."""

import pymysql
import pytest

from tools.rpl import flavour as fl

MARIA = fl.from_version("10.11.6-MariaDB-0+deb12u1", "Debian 12")
MY80_OLD = fl.from_version("8.0.21", "MySQL Community Server - GPL")
MY80 = fl.from_version("8.0.40", "MySQL Community Server - GPL")
MY84 = fl.from_version("8.4.3", "MySQL Community Server - GPL")


def rendered(statement):
    """The statement as it goes over the wire: PyMySQL escapes each argument (nothing is str.format-ed, F14)."""
    sql, args = statement
    if args is None:
        return sql
    conn = pymysql.connections.Connection.__new__(pymysql.connections.Connection)
    conn.encoding, conn.charset, conn.server_status = "utf8mb4", "utf8mb4", 0
    return sql % tuple(conn.escape(a) for a in args)


def test_detection():
    assert MARIA.name == "mariadb" and MARIA.version == (10, 11, 6)
    assert MY84.name == "mysql" and MY84.version == (8, 4, 3)
    assert fl.from_version("5.5.5-10.6.12-MariaDB", "").name == "mariadb"  # old client-compat prefix
    assert fl.from_binary_version("/usr/sbin/mysqld  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)"
                                  ).version == (8, 4, 3)
    assert fl.from_binary_version("/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu"
                                  ).name == "mariadb"


def test_change_source_per_flavour():
    hostile = "x', MASTER_HOST='evil"
    m = rendered(MARIA.change_source("127.0.0.1", 3307, "rpl", hostile))
    assert m.startswith("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=3307, MASTER_USER='rpl'")
    assert "MASTER_USE_GTID=slave_pos" in m and "MASTER_PASSWORD='x\\', MASTER_HOST=\\'evil'" in m
    new = rendered(MY80.change_source("127.0.0.1", 3307, "rpl", "pw"))
    assert new.startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=3307")
    assert "SOURCE_AUTO_POSITION=1" in new and "GET_SOURCE_PUBLIC_KEY=1" in new
    assert rendered(MY84.change_source("h", 1, "u", "p")) == rendered(MY80.change_source("h", 1, "u", "p"))
    old = rendered(MY80_OLD.change_source("h", 1, "u", "p"))
    assert old.startswith("CHANGE MASTER TO") and "MASTER_AUTO_POSITION=1" in old and "GET_MASTER_PUBLIC_KEY=1" in old


@pytest.mark.parametrize("flav, words", [
    (MARIA, ("START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS", "SHOW SLAVE HOSTS",
             "STOP SLAVE IO_THREAD")),
    (MY80_OLD, ("START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS", "SHOW REPLICAS",
                "STOP REPLICA IO_THREAD")),  # renamed below: 8.0.21 has only the SLAVE words
    (MY84, ("START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS", "SHOW REPLICAS",
            "STOP REPLICA IO_THREAD")),
])
def test_replica_control_words(flav, words):
    if flav is MY80_OLD:  # before 8.0.22 only the SLAVE words exist
        words = tuple(w.replace("REPLICAS", "SLAVE HOSTS").replace("REPLICA", "SLAVE") for w in words)
    got = tuple(s[0] for s in (flav.start_replica(), flav.stop_replica(), flav.reset_replica_all(),
                               flav.replica_status(), flav.list_replicas(), flav.stop_io_thread()))
    assert got == words


def test_gtid_reading_waiting_and_fencing():
    assert "@@gtid_binlog_state" in MARIA.gtid_state_sql()[0]
    assert "@@GLOBAL.gtid_executed" in MY84.gtid_state_sql()[0]
    assert rendered(MARIA.wait_for_gtids("0-1-5", 3)) == "SELECT MASTER_GTID_WAIT('0-1-5', 3.0e0)"
    assert rendered(MY84.wait_for_gtids("u:1-5", 3)) == "SELECT WAIT_FOR_EXECUTED_GTID_SET('u:1-5', 3.0e0)"
    assert MARIA.fence() == [("SET GLOBAL read_only = ON", None)]
    assert MY84.fence() == [("SET GLOBAL super_read_only = ON", None)]
    assert [s[0] for s in MARIA.align_demoted_primary()] == ["SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos"]
    assert MY84.align_demoted_primary() == []


def test_server_options():
    m = MARIA.server_options(4000)
    assert {"--log-bin=binlog", "--log-slave-updates", "--gtid-strict-mode=1", "--report-port=4000"} <= set(m)
    y = MY84.server_options(4000)
    assert {"--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--log-replica-updates", "--report-host=127.0.0.1"
            } <= set(y)


def test_empty_transaction_skip():
    assert [rendered(s) for s in MARIA.inject_empty("0-3-12")] == [
        "SET SESSION gtid_domain_id = 0", "SET SESSION server_id = 3", "SET SESSION gtid_seq_no = 12",
        "FLUSH PRIVILEGES"]
    g = "dd365ccc-9898-11e5-872d-172ea4aa6911:1"
    assert [rendered(s) for s in MY84.inject_empty(g)] == [  # Listing 8-3
        "SET GTID_NEXT = '%s'" % g, "BEGIN", "COMMIT", "SET GTID_NEXT = 'AUTOMATIC'"]
    assert MARIA.valid_gtid("0-3-12") and not MARIA.valid_gtid("0-3-12'; DROP")
    assert MY84.valid_gtid(g) and not MY84.valid_gtid("0-3-12")


def test_semisync_names():
    assert MARIA.semisync_install("source") == []
    assert [s[0] for s in MARIA.semisync_enable("source", 500)][0] == "SET GLOBAL rpl_semi_sync_master_enabled = ON"
    assert rendered(MARIA.semisync_enable("source", 500)[-1]) == "SET GLOBAL rpl_semi_sync_master_timeout = 500"
    assert MARIA.semisync_enable("replica") == [("SET GLOBAL rpl_semi_sync_slave_enabled = ON", None)]
    assert MARIA.semisync_status_vars["status"] == "Rpl_semi_sync_master_status"
    assert MY84.semisync_install("source") == [("INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'",
                                                None)]
    assert MY84.semisync_enable("replica") == [("SET GLOBAL rpl_semi_sync_replica_enabled = ON", None)]
    assert rendered(MY84.semisync_enable("source", 500)[-1]) == "SET GLOBAL rpl_semi_sync_source_timeout = 500"
    assert MY84.semisync_status_vars["no_tx"] == "Rpl_semi_sync_source_no_tx"
    assert MY80_OLD.semisync_install("replica") == [("INSTALL PLUGIN rpl_semi_sync_slave SONAME 'semisync_slave.so'",
                                                     None)]
    assert MY80_OLD.semisync_vars["enabled"] == "rpl_semi_sync_master_enabled"


def test_status_rows_normalised_alike():
    maria_row = {"Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": None,
                 "Master_Host": "127.0.0.1", "Master_Port": 3307, "Last_IO_Errno": 2003, "Last_IO_Error": "refused",
                 "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Gtid_IO_Pos": "0-1-9", "Master_Server_Id": 1}
    mysql_row = {"Replica_IO_Running": "Connecting", "Replica_SQL_Running": "Yes", "Seconds_Behind_Source": None,
                 "Source_Host": "127.0.0.1", "Source_Port": 3307, "Last_IO_Errno": 2003, "Last_IO_Error": "refused",
                 "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Retrieved_Gtid_Set": "u:1-9",
                 "Executed_Gtid_Set": "u:1-\n8", "Source_Server_Id": 1}
    a, b = MARIA.normalize_status(maria_row), MY84.normalize_status(mysql_row)
    for key in ("io_state", "io_running", "sql_running", "source_port", "last_io_errno", "source_host"):
        assert a[key] == b[key], key
    assert a["io_running"] is False and a["gtid_received"] == "0-1-9" and b["gtid_executed"] == "u:1-8"
    assert MARIA.normalize_status(None) is None


def test_mariadb_gtid_state_errant_and_ranking():
    primary = fl.MariaGtids("0-1-10,0-2-4")
    clean = fl.MariaGtids("0-1-9,0-2-4")
    errant = fl.MariaGtids("0-1-10,0-3-11")
    assert primary.covers(clean) and not clean.covers(primary)
    assert clean.missing_from(primary, exclude_origins=(1,)) == []
    assert errant.missing_from(primary, exclude_origins=(1,)) == ["0-3-11"]
    assert errant.domains() == {0: 11}
    assert str(fl.MariaGtids("1-2-3, 0-1-5")) == "0-1-5,1-2-3"


def test_mysql_gtid_set_arithmetic():
    a = fl.MysqlGtids("aaaaaaaa-0000-0000-0000-000000000001:1-10:12,\nbbbbbbbb-0000-0000-0000-000000000002:1-3")
    b = fl.MysqlGtids("aaaaaaaa-0000-0000-0000-000000000001:1-11")
    assert a.count() == 14
    assert str(a.subtract(b)) == "aaaaaaaa-0000-0000-0000-000000000001:12,bbbbbbbb-0000-0000-0000-000000000002:1-3"
    assert a.missing_from(b, exclude_origins=("aaaaaaaa-0000-0000-0000-000000000001",)) == [
        "bbbbbbbb-0000-0000-0000-000000000002:%d" % n for n in (1, 2, 3)]
    assert a.union(b).covers(a) and a.union(b).covers(b) and not b.covers(a)
    tagged = fl.MysqlGtids("aaaaaaaa-0000-0000-0000-000000000001:tag1:1-2")  # MySQL 8.4 tagged GTIDs
    assert tagged.contains("aaaaaaaa-0000-0000-0000-000000000001:tag1", 2)
