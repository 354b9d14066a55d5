"""The host side: reads boards over serial, writes their readings to MySQL/MariaDB, acknowledges after COMMIT.

`gateway.schema` owns the database layout and its migrations, `gateway.db` the connection, the error
classification and the batched, idempotent reading store.
"""
