"""The embedded store (mongomock) behind a MongoDB wire-protocol socket, for multi-process tests.

No MongoDB server can be installed where the suite runs, yet several server processes
must share one database (users registered through one process log in through another).
This serves the commands PyMongo sends for chatapp's stores (hello, find, insert,
update, delete, findAndModify, aggregate, distinct, createIndexes...) from a single
mongomock client, one command at a time, so every process sees the same data with the
same semantics as the rest of the suite. Test infrastructure only, never for production.

    python -m tests.mongo_wire --port 27999     # then MONGO_DB_URL=mongodb://127.0.0.1:27999/db
"""
import argparse
import datetime
import socketserver
import struct
import threading

import bson
import mongomock
import mongomock.helpers
from bson.codec_options import CodecOptions
from pymongo import ReturnDocument

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CODEC = CodecOptions(tz_aware=True, tzinfo=datetime.timezone.utc)
HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True, "maxBsonObjectSize": 16 * 1024 * 1024,
         "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000, "minWireVersion": 0,
         "maxWireVersion": 17, "readOnly": False}


class CommandError(Exception):
    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class Store:
    """Runs one command document against mongomock, under one lock."""

    def __init__(self):
        # The embedded store's hashed indexes, as the app's own embedded store has them: with
        # mongomock's scans alone every history read scanned every message under the one lock,
        # and the soak test's reads queued past their 20 s timeout.
        from chatapp import embedded

        embedded.install()
        self.client = mongomock.MongoClient(tz_aware=True)
        self.lock = threading.Lock()
        self.connections = 0
        self._count_lock = threading.Lock()

    def run(self, db_name, cmd):
        name = next(iter(cmd))
        handler = getattr(self, "cmd_" + name.lower(), None)
        if handler is None:
            raise CommandError(f"no such command: {name}", 59)
        if name.lower() in self.UNLOCKED:
            return {**handler(None, cmd[name], cmd), "ok": 1.0}
        with self.lock:
            try:
                reply = handler(self.client[db_name], cmd[name], cmd)
            except mongomock.DuplicateKeyError as exc:
                if name in ("insert", "update", "delete"):  # a write error, as MongoDB reports it
                    return {"ok": 1.0, "n": 0, "writeErrors": [
                        {"index": 0, "code": 11000, "errmsg": str(exc)}]}
                raise CommandError(str(exc), 11000) from None
            except mongomock.OperationFailure as exc:
                raise CommandError(str(exc), exc.code or 2) from None
        return {**reply, "ok": 1.0}

    # -- handshake and administration --------------------------------------------------
    # Answered without the store's lock, as a MongoDB server answers them while it is busy:
    # PyMongo's monitor gives hello connectTimeoutMS, and a hello queued behind slow queries
    # marked the server unknown, which cancels every operation in flight ("operation
    # cancelled", a 503 from the app) although nothing was down.
    UNLOCKED = {"hello", "ismaster", "ping", "buildinfo"}

    def cmd_hello(self, db, _, cmd):
        with self._count_lock:
            self.connections += 1
            connection_id = self.connections
        return {**HELLO, "localTime": datetime.datetime.now(datetime.timezone.utc),
                "connectionId": connection_id}

    cmd_ismaster = cmd_hello

    def cmd_ping(self, db, _, cmd):
        return {}

    cmd_endsessions = cmd_killcursors = cmd_ping

    def cmd_buildinfo(self, db, _, cmd):
        return {"version": "6.0.0", "versionArray": [6, 0, 0, 0]}

    def cmd_dropdatabase(self, db, _, cmd):
        self.client.drop_database(db.name)
        return {}

    def cmd_drop(self, db, coll, cmd):
        db.drop_collection(coll)
        return {}

    def cmd_createindexes(self, db, coll, cmd):
        existing = db[coll].index_information()
        for spec in cmd["indexes"]:
            key = list(spec["key"].items())
            if spec.get("name") in existing:
                # MongoDB: an index that exists already is a no-op. (mongomock would re-check
                # a partial unique index over every stored document as if it were not
                # partial, and refuse a restart on a database that has messages.)
                if [tuple(k) for k in existing[spec["name"]]["key"]] != [tuple(k) for k in key]:
                    raise CommandError(f"an index named {spec['name']} exists with another key",
                                       86)
                continue
            options = {k: v for k, v in spec.items() if k not in ("key", "v")}
            if options.get("unique") and options.get("partialFilterExpression"):
                self._create_partial_unique(db[coll], key, options)
            else:
                db[coll].create_index(key, **options)
        return {}

    def cmd_dropindexes(self, db, coll, cmd):
        """`index`: a name, a key document, a list of names, or "*" (every index but _id_)."""
        existing = db[coll].index_information()
        if not existing:
            raise CommandError(f"ns not found {db.name}.{coll}", 26)
        wanted = cmd["index"]
        if wanted == "*":
            names = [name for name in existing if name != "_id_"]
        elif isinstance(wanted, str):
            names = [wanted]
        elif isinstance(wanted, list):
            names = list(wanted)
        else:
            key = [tuple(k) for k in wanted.items()]
            names = [n for n, info in existing.items() if [tuple(k) for k in info["key"]] == key]
            if not names:
                raise CommandError(f"can't find index with key: {dict(wanted)}", 27)
        for name in names:
            if name == "_id_":
                raise CommandError("cannot drop _id index", 72)
            if name not in existing:
                raise CommandError(f"index not found with name [{name}]", 27)
        for name in names:
            db[coll].drop_index(name)
        return {"nIndexesWas": len(existing)}

    @staticmethod
    def _create_partial_unique(collection, key, options):
        """mongomock checks the documents already stored against a new unique index as if
        it were not partial (two documents without the field collide): check the ones the
        filter selects, as MongoDB does, then declare it (mongomock honours the filter on
        every later write)."""
        fields = [name for name, _ in key]
        seen = set()
        for doc in collection.find(options["partialFilterExpression"], {f: 1 for f in fields}):
            values = tuple(_indexed_value(doc, f) for f in fields)
            if values in seen:
                raise CommandError("E11000 duplicate key error building index "
                                   f"{options.get('name')}", 11000)
            seen.add(values)
        name = collection.create_index(key, **{**options, "unique": False})
        collection._store.indexes[name]["unique"] = True

    def cmd_listindexes(self, db, coll, cmd):
        """As MongoDB answers: `key` a document in key order (mongomock keeps a list of
        pairs, which PyMongo's index_information cannot read), `v`, `name`, then the
        options; a collection that does not exist is the error NamespaceNotFound (26)."""
        if coll not in db.list_collection_names():
            raise CommandError(f"ns does not exist: {db.name}.{coll}", 26)
        rows = [bson.SON([("v", info.get("v", 2)), ("key", bson.SON(info["key"])), ("name", name),
                          *((k, v) for k, v in info.items() if k not in ("v", "key"))])
                for name, info in db[coll].index_information().items()]
        return cursor_reply(db, coll, rows)

    # -- reads ---------------------------------------------------------------------
    def cmd_find(self, db, coll, cmd):
        cursor = db[coll].find(cmd.get("filter") or {}, cmd.get("projection"))
        if cmd.get("sort"):
            cursor = cursor.sort(list(cmd["sort"].items()))
        if cmd.get("skip"):
            cursor = cursor.skip(cmd["skip"])
        if cmd.get("limit"):
            cursor = cursor.limit(abs(cmd["limit"]))
        return cursor_reply(db, coll, list(cursor))

    def cmd_aggregate(self, db, coll, cmd):
        return cursor_reply(db, coll, list(db[coll].aggregate(cmd["pipeline"])))

    def cmd_count(self, db, coll, cmd):
        return {"n": db[coll].count_documents(cmd.get("query") or {})}

    def cmd_distinct(self, db, coll, cmd):
        return {"values": db[coll].distinct(cmd["key"], cmd.get("query") or {})}

    # -- writes --------------------------------------------------------------------
    def cmd_insert(self, db, coll, cmd):
        n, errors = 0, []
        for index, doc in enumerate(cmd["documents"]):
            try:
                db[coll].insert_one(doc)
                n += 1
            except mongomock.DuplicateKeyError as exc:
                errors.append({"index": index, "code": 11000, "errmsg": str(exc)})
                if cmd.get("ordered", True):
                    break
        return {"n": n, **({"writeErrors": errors} if errors else {})}

    def cmd_update(self, db, coll, cmd):
        n = modified = 0
        upserted = []
        for index, spec in enumerate(cmd["updates"]):
            query, change, upsert = spec["q"], spec["u"], spec.get("upsert", False)
            if not any(key.startswith("$") for key in change):
                result = db[coll].replace_one(query, change, upsert=upsert)
            elif spec.get("multi"):
                result = db[coll].update_many(query, change, upsert=upsert)
            else:
                result = db[coll].update_one(query, change, upsert=upsert)
            n += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                n += 1
                upserted.append({"index": index, "_id": result.upserted_id})
        return {"n": n, "nModified": modified, **({"upserted": upserted} if upserted else {})}

    def cmd_delete(self, db, coll, cmd):
        n = 0
        for spec in cmd["deletes"]:
            method = db[coll].delete_one if spec.get("limit") == 1 else db[coll].delete_many
            n += method(spec["q"]).deleted_count
        return {"n": n}

    def cmd_findandmodify(self, db, coll, cmd):
        collection, query = db[coll], cmd.get("query") or {}
        options = {"projection": cmd.get("fields"), "sort": list((cmd.get("sort") or {}).items()) or None}
        before = collection.find_one(query, sort=options["sort"])
        if cmd.get("remove"):
            value = collection.find_one_and_delete(query, **options)
            return {"value": value, "lastErrorObject": {"n": int(value is not None)}}
        change = cmd["update"]
        returning = ReturnDocument.AFTER if cmd.get("new") else ReturnDocument.BEFORE
        method = (collection.find_one_and_update if any(k.startswith("$") for k in change)
                  else collection.find_one_and_replace)
        value = method(query, change, upsert=cmd.get("upsert", False),
                       return_document=returning, **options)
        last = {"n": 1 if (before is not None or cmd.get("upsert")) else 0,
                "updatedExisting": before is not None}
        if before is None and cmd.get("upsert"):
            after = collection.find_one(query, {"_id": 1}, sort=options["sort"])  # any projection
            if after is not None:
                last["upserted"] = after["_id"]
        return {"value": value, "lastErrorObject": last}


def _indexed_value(doc, field):
    try:
        return repr(mongomock.helpers.get_value_by_dot(doc, field))
    except KeyError:
        return None  # a missing field indexes as null


def cursor_reply(db, coll, rows):
    return {"cursor": {"id": bson.Int64(0), "ns": f"{db.name}.{coll}", "firstBatch": rows}}


class Handler(socketserver.BaseRequestHandler):
    """One client connection: read framed messages, answer each."""

    def handle(self):
        store = self.server.store
        while True:
            header = self._read(16)
            if header is None:
                return
            length, request_id, _, opcode = struct.unpack("<iiii", header)
            body = self._read(length - 16)
            if body is None:
                return
            if opcode == OP_MSG:
                db_name, cmd = parse_op_msg(body)
                reply = encode_op_msg(request_id, answer(store, db_name, cmd))
            elif opcode == OP_QUERY:
                db_name, cmd = parse_op_query(body)
                reply = encode_op_reply(request_id, answer(store, db_name, cmd))
            else:
                return
            self.request.sendall(reply)

    def _read(self, size):
        chunks = []
        while size:
            chunk = self.request.recv(size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def answer(store, db_name, cmd):
    try:
        return store.run(db_name, cmd)
    except CommandError as exc:
        return {"ok": 0.0, "errmsg": str(exc), "code": exc.code}
    except Exception as exc:  # noqa: BLE001 - an unsupported query must not kill the server
        return {"ok": 0.0, "errmsg": f"{type(exc).__name__}: {exc}", "code": 8}


def parse_op_msg(body):
    flags = struct.unpack_from("<I", body)[0]
    end = len(body) - (4 if flags & 1 else 0)
    pos, cmd = 4, None
    while pos < end:
        kind = body[pos]
        pos += 1
        size = struct.unpack_from("<i", body, pos)[0]
        if kind == 0:
            cmd = bson.decode(body[pos:pos + size], CODEC)
        else:
            name_end = body.index(b"\x00", pos + 4)
            identifier = body[pos + 4:name_end].decode()
            cmd.setdefault(identifier, []).extend(bson.decode_all(body[name_end + 1:pos + size], CODEC))
        pos += size
    return cmd.pop("$db", "admin"), cmd


def parse_op_query(body):
    name_end = body.index(b"\x00", 4)
    namespace = body[4:name_end].decode()
    pos = name_end + 1 + 8
    size = struct.unpack_from("<i", body, pos)[0]
    cmd = bson.decode(body[pos:pos + size], CODEC)
    if "$query" in cmd:
        cmd = cmd["$query"]
    return namespace.split(".", 1)[0], cmd


def encode_op_msg(response_to, doc):
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), 0, response_to, OP_MSG) + payload


def encode_op_reply(response_to, doc):
    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), 0, response_to, OP_REPLY) + payload


class WireServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host="127.0.0.1", port=0):
        super().__init__((host, port), Handler)
        self.store = Store()

    @property
    def port(self):
        return self.server_address[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    args = parser.parse_args()
    with WireServer(args.host, args.port) as server:
        print(f"mongo_wire: serving the embedded store on {args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
