"""Simulated hardware for the bench and the tests."""
