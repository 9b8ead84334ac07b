"""nx-27017, a MongoDB wire-protocol server backed by SQLite, as a real database process.

`make test` installs it into .venv/nx-27017 (tests/requirements-nx-27017.txt): it needs
pymongo >= 4.18, the app stays below 4.16. What it serves: ping, inserts, unique indexes,
lookups by `_id` and by string fields (login by email, a direct conversation by its pair
key). What it does not: filters on ObjectId values in other fields (they match nothing, so
a send's `client_id` retry lookup finds nothing, and neither does a conversation's history:
tests read the stored messages whole) and compound indexes that include `_id` (created,
but every later insert into that collection fails with "JSON path error near '_id'"):
tests send without `client_id` and drop those indexes after each app start-up.
"""
import signal
import subprocess
import time

import pymongo
import pytest

from tests.live import ROOT

NX_27017 = ROOT / ".venv" / "nx-27017" / "bin" / "nx-27017"


class DatabaseProcess:
    """nx-27017 on a loopback port with its data in one SQLite file; stopped by PID."""

    def __init__(self, directory, port):
        if not NX_27017.exists():
            pytest.fail(f"{NX_27017} is missing: `make test` installs it "
                        "(tests/requirements-nx-27017.txt)")
        self.port = port
        self.directory = directory
        self.url = f"mongodb://127.0.0.1:{port}/chatapp"
        self.proc = None

    def start(self, timeout=20):
        d = self.directory
        self.proc = subprocess.Popen(
            [str(NX_27017), "--host", "127.0.0.1", "-p", str(self.port), "--db", str(d / "db.sqlite"),
             "--log-file", str(d / "nx.log"), "--pid-file", str(d / "nx.pid")],
            stdout=open(d / "nx.out", "ab"), stderr=subprocess.STDOUT)
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=300)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return self
                except pymongo.errors.PyMongoError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("nx-27017 did not start: "
                                           + (d / "nx.out").read_text(errors="replace")[-2000:])
                    time.sleep(0.2)
        finally:
            client.close()

    def stop(self):
        """Kill it as a crash would (SIGKILL): no goodbye to the app's connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stored_messages(self):
        """Every stored message, read without a filter: nx-27017 cannot select by an ObjectId
        outside `_id` (a conversation's history is selected by its id), MongoDB can."""
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=2000)
        try:
            return list(client.get_default_database().messages.find({}))
        finally:
            client.close()

    def drop_indexes_nx_cannot_serve(self):
        """nx-27017 turns a compound index naming `_id` into a broken JSON path that fails
        every later insert into the collection; MongoDB serves them. Drop those (two on
        messages, one on conversations)."""
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=2000)
        try:
            database = client.get_default_database()
            for collection in (database.messages, database.conversations):
                for name in collection.index_information():
                    if name.endswith("__id"):
                        collection.drop_index(name)
        finally:
            client.close()
