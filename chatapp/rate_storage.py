"""`memory://` rate-limit counters (one process) without a timer thread per 10 ms.

limits' `MemoryStorage` expires its counters from a `threading.Timer` that it starts again,
10 ms after the previous one fired, on every count it makes while none is pending: during
traffic, a new thread every 10 ms, each walking every counter. Under eventlet (`threading`
monkey-patched) each is a green thread whose creation walks eventlet's thread list: ~10 % of
a saturated server's busy samples, 942 -> 848 messages per server CPU-second
(bench/README.md, change 11).

This subclass keeps limits' counters, windows and answers, and drops the timer: a counter is
expired when it is read (limits' `get` already does so on every count), and every counter is
swept inline at most once per SWEEP_SECONDS, so the counters of users who went away do not
stay in memory. It registers itself for the `memory` scheme (limits maps a URI's scheme to
the storage class that declares it, the last declared winning): `RATELIMIT_STORAGE_URI=
memory://` keeps meaning "counters in this process". Redis and the other schemes are
limits' own.
"""
import time

from limits.storage import MemoryStorage

SWEEP_SECONDS = 10.0


class LoopMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["memory"]

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.timer.cancel()  # the one limits started: nothing is counted yet
        self.swept_at = time.monotonic()

    def _MemoryStorage__schedule_expiry(self):
        """Called by limits before each count (its private hook: limits 5.x)."""
        now = time.monotonic()
        if now - self.swept_at >= SWEEP_SECONDS:
            self.swept_at = now
            self._MemoryStorage__expire_events()
