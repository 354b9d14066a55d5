# The scripts in this folder are not pytest modules: they run as plain programs, under CPython and under the real
# MicroPython interpreter, from tests/test_micropython_core.py. Keep pytest from importing them.
collect_ignore_glob = ["*.py"]
