"""The real rp2 MicroPython firmware: tools/rp2/build.sh builds and caches it; images.py finds it for Python."""
