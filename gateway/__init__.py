"""The host side: reads boards over serial, writes their readings to MySQL/MariaDB, acknowledges after COMMIT.

`gateway.schema` owns the database layout and its migrations, `gateway.dbconn` the connection settings and the
error classification, `gateway.primary` the choice of server among several, and `gateway.db` the batched,
idempotent reading store.
"""
