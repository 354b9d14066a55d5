"""MicroPython runs this file at boot, and only as source: it imports the board's program from boardmain (.mpy)."""

from boardmain import loop, main, start  # noqa: F401 - start and loop: the tests drive them as main.start/main.loop

if __name__ == "__main__":
    main()
