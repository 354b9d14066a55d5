"""Bench and test tooling: private database servers, virtual boards and buses, replication helpers."""
