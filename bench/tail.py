"""The long-running tail (issue 14, target 2): latency on a server that already stores 100 000 messages.

`run.py`'s `tail` scenario starts chatapp through this module (`python -m bench.tail serve`)
instead of `wsgi.py` directly. It is wsgi.py, the same process shape (eventlet, the embedded
store in the process, `gc.freeze()` after start-up as wsgi.py does), with two bench-only
additions before it serves:

- **Seeding.** `TAIL_SEED` messages are written into one direct conversation of two seed
  users, in the server's own process and store: the first through
  `chatapp.chat.service.send_message`, the rest through the stores with the documents the
  service writes (bench/flat.py's `_bulk`: message, change-feed record, counters, read
  markers). Through the API it would take ~100 s at chatapp's saturation rate for every run;
  a seed through a separate mongo_wire store would leave the heap (what this scenario is
  about) out of chatapp's process. The messages, their feed records and index entries live
  in chatapp's heap exactly as if they had come through the API.
- **Collection pauses.** `gc.callbacks` records every collection (start on the monotonic
  clock, which the runner shares, its duration, its generation); they are written as JSON to
  `GC_TIMINGS_LOG` when the server stops. The runner keeps the pauses inside the measured
  window.

`TAIL_GC` picks a variant: `default` (as wsgi.py), or `freeze` (`gc.freeze()` again after
the seed: the stored messages leave the collector's sight, as a server could do after
loading or periodically), printed side by side in the same run; the runner's `fresh`
variant is `default` with nothing seeded (what the store's size adds, in the same run).
The store itself freezes what it holds every `EMBEDDED_FREEZE_EVERY` new documents
(chatapp/embedded_heap.py), the seed's included, so `freeze` now adds one freeze after the
seed to what `default` does.
"""
import atexit
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class GcTimings:
    def __init__(self):
        self.pauses, self._start = [], {}

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.monotonic()
        elif self._start:
            self.pauses.append((self._start, time.monotonic() - self._start,
                                info["generation"]))
            self._start = None

    def write(self, path):
        Path(path).write_text(json.dumps(self.pauses))


def seed(app, n):
    from bson import ObjectId

    from bench.flat import _bulk
    from bench.history import _register
    from chatapp.chat import service

    if n < 2:
        return
    client = app.test_client()
    a, b = (_register(client, f"tailseed{i}_{int(time.time())}") for i in range(2))
    a, b = ObjectId(a["id"]), ObjectId(b["id"])
    with app.test_request_context():
        first, _ = service.send_message(a, {"receiver": b, "content": "first"})
        _bulk(ObjectId(first["conversation"]), a, b, n - 1)


def serve():
    t0 = time.monotonic()
    import wsgi

    timings = GcTimings()
    path = os.environ.get("GC_TIMINGS_LOG")
    if path:  # from before the seed: its gen-2 pauses show what one costs as the heap grows
        gc.callbacks.append(timings)
        atexit.register(timings.write, path)
    seed(wsgi.app, int(os.environ.get("TAIL_SEED", "0")))
    gc.collect()
    if os.environ.get("TAIL_GC", "default") == "freeze":
        gc.freeze()
    print(f"bench tail: seeded {os.environ.get('TAIL_SEED')} messages in "
          f"{time.monotonic() - t0:.1f} s; gc {os.environ.get('TAIL_GC', 'default')}, "
          f"frozen {gc.get_freeze_count()}", flush=True)
    wsgi.main()


def window(pauses, start, end):
    """Pauses that began in [start, end): count, total and longest ms, per generation."""
    out = {}
    for at, seconds, gen in pauses:
        if start <= at < end:
            row = out.setdefault(f"gen{gen}", {"count": 0, "total_ms": 0.0, "longest_ms": 0.0})
            row["count"] += 1
            row["total_ms"] = round(row["total_ms"] + 1000 * seconds, 2)
            row["longest_ms"] = round(max(row["longest_ms"], 1000 * seconds), 2)
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m bench.tail serve")
    serve()
