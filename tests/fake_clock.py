"""A clock the test moves and a threading.Timer the test fires, for the gateway's time-driven parts (the clock keeper,
the protocol's rate limits): exact, with no sleeps."""

T0 = 1795000000.25                       # 2026-11-18T..., a quarter second past a whole second


class Clock:
    """`now()` for the code under test: `clock.t` is the time; the test sets or advances it."""

    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


class Timers:
    """threading.Timer's factory: each timer is kept (with its delay, function and arguments) until the test fires
    it, `timer.fire()` or `timers.fire()` for the oldest."""

    def __init__(self):
        self.pending = []

    def __call__(self, delay, fn, args=()):
        timers = self

        class Timer:
            daemon = False

            def start(self):
                timers.pending.append(self)

            def is_alive(self):
                return self in timers.pending

            def fire(self):
                timers.pending.remove(self)
                self.fn(*self.args)
        t = Timer()
        t.delay, t.fn, t.args = delay, fn, args
        return t

    def fire(self):
        self.pending[0].fire()
