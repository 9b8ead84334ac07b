"""The production shape (issue 14, target 1): chatapp with its store in another process.

`run.py`'s `production` scenario starts `tests/mongo_wire.py`'s store (the embedded store,
mongomock, behind MongoDB's wire protocol) as a process of its own, through this module's
`wire` entry point, and points chatapp's `MONGO_DB_URL` at it: the store's CPU is then not
chatapp's, as with a MongoDB server. The same saturation load as the `saturation` scenario
runs against that chatapp and against the floor.

The wire server here is `tests.mongo_wire.WireServer` with one addition: it counts the
commands it answers, by name, and answers the command `benchCounts` with the counts (the
runner asks before and after the measured window, so the figure is the round trips chatapp
made per message while under load).

    python -m bench.production wire --port 27999
"""
import argparse
import collections
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def counting_server(host, port):
    from tests import mongo_wire

    class CountingStore(mongo_wire.Store):
        UNLOCKED = mongo_wire.Store.UNLOCKED | {"benchcounts"}

        def __init__(self):
            super().__init__()
            self.counts = collections.Counter()
            self._counts_lock = threading.Lock()

        def run(self, db_name, cmd):
            name = next(iter(cmd)).lower()
            if name != "benchcounts":
                with self._counts_lock:
                    self.counts[name] += 1
            return super().run(db_name, cmd)

        def cmd_benchcounts(self, db, _, cmd):
            with self._counts_lock:
                return {"counts": dict(self.counts)}

    class CountingWire(mongo_wire.WireServer):
        def __init__(self, host, port):
            super(mongo_wire.WireServer, self).__init__((host, port), mongo_wire.Handler)
            self.store = CountingStore()

    return CountingWire(host, port)


def counts(url):
    """The wire server's command counts so far, {name: n}."""
    from pymongo import MongoClient

    client = MongoClient(url, serverSelectionTimeoutMS=5000, directConnection=True)
    try:
        return dict(client.admin.command("benchCounts")["counts"])
    finally:
        client.close()


def stored_messages(url, db_name):
    from pymongo import MongoClient

    client = MongoClient(url, serverSelectionTimeoutMS=5000, directConnection=True)
    try:
        return client[db_name].messages.count_documents({})
    finally:
        client.close()


def diff(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) - before.get(k, 0)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["wire"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    args = parser.parse_args(argv)
    with counting_server(args.host, args.port) as server:
        print(f"bench wire: serving the embedded store on {args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
