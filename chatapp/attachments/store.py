"""The only code that touches the attachments' collections: GridFS's `fs.files` and `fs.chunks`.

Files are stored in the GridFS layout (the specification every MongoDB driver follows, so
PyMongo's `gridfs`, `mongofiles` or any GridFS tool reads them): chunk `n` of a file is
`{files_id, n, data}` of `chunkSize` bytes (the last one shorter), and the files document,
written after its chunks, is

    {_id, filename, length, chunkSize, uploadDate,
     metadata: {owner, content_type, sha256, unsent_since?, sent_in: [{conv, msg}]}}

`unsent_since` is there until the upload is first sent in a message (the orphan sweep reads
it through its index); `sent_in` lists the messages, not deleted, it was sent in.

Chunks are written and read here, one at a time, rather than through PyMongo's GridIn and
GridOut, which do not stream: GridIn keeps every chunk of a file in memory until 32 MiB of
them (a whole attachment) are sent in one `insert_many`, and GridOut reads through one
cursor whose first batch may hold 16 MiB. The same code runs on MongoDB and on the embedded
store (mongomock), which PyMongo's `GridFSBucket` cannot drive alone (its `delete` reads
client options mongomock lacks). Deletion follows the specification too: the files
document first, then the chunks.
"""
from bson import Binary
from pymongo import ASCENDING

from chatapp.extensions import mongo

CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size


def files():
    return mongo.collection("fs.files")


def chunks():
    return mongo.collection("fs.chunks")


def ensure_indexes():
    # GridFS's own two (the keys and names drivers create them with).
    files().create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
    chunks().create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)
    files().create_index([("metadata.unsent_since", ASCENDING)], sparse=True, name="orphans")
    files().create_index([("metadata.sent_in.msg", ASCENDING)], sparse=True, name="by_message")


class Upload:
    """A GridFS file being written: `write` bytes (each full chunk is stored at once, so at
    most one chunk is held here), then `close` (the last chunk, then the files document) or
    `abort` (the chunks stored so far are deleted)."""

    def __init__(self, file_id, filename):
        self.id, self.filename, self.length = file_id, filename, 0
        self._pending, self._n = bytearray(), 0

    def write(self, data):
        self._pending += data
        while len(self._pending) >= CHUNK_SIZE:
            self._store_chunk(bytes(self._pending[:CHUNK_SIZE]))
            del self._pending[:CHUNK_SIZE]

    def close(self, metadata, upload_date):
        if self._pending:
            self._store_chunk(bytes(self._pending))
            self._pending.clear()
        files().insert_one({"_id": self.id, "length": self.length, "chunkSize": CHUNK_SIZE,
                            "uploadDate": upload_date, "filename": self.filename,
                            "metadata": metadata})

    def abort(self):
        chunks().delete_many({"files_id": self.id})

    def _store_chunk(self, data):
        chunks().insert_one({"files_id": self.id, "n": self._n, "data": Binary(data)})
        self._n += 1
        self.length += len(data)


def find_file(file_id):
    return files().find_one({"_id": file_id})


def find_owned(file_ids, owner_id):
    """{id: file document} of those of `file_ids` that `owner_id` uploaded."""
    return {doc["_id"]: doc for doc in files().find(
        {"_id": {"$in": list(file_ids)}, "metadata.owner": owner_id})}


def read_chunk(file_id, n):
    """The bytes of chunk `n`, or None when the file's chunks are gone."""
    doc = chunks().find_one({"files_id": file_id, "n": n}, {"data": 1})
    return None if doc is None else bytes(doc["data"])


def add_link(file_ids, link):
    """Record that these files were sent in `link` ({conv, msg}): they are no orphans."""
    files().update_many({"_id": {"$in": list(file_ids)}},
                        {"$addToSet": {"metadata.sent_in": link},
                         "$unset": {"metadata.unsent_since": ""}})


def sent_in_message(message_id):
    return [doc["_id"] for doc in files().find({"metadata.sent_in.msg": message_id}, {"_id": 1})]


def drop_link(file_id, message_id):
    files().update_one({"_id": file_id}, {"$pull": {"metadata.sent_in": {"msg": message_id}}})


def orphans(before, limit):
    """Ids of uploads never sent in a message and uploaded before `before`."""
    return [doc["_id"] for doc in files().find(
        {"metadata.unsent_since": {"$lt": before}}, {"_id": 1}).limit(limit)]


def delete_file(file_id, condition=None):
    """Delete the file if it (still) matches `condition`; True when it was deleted. The files
    document goes first, so no reader finds a document whose chunks are gone for good."""
    removed = files().delete_one({"_id": file_id, **(condition or {})}).deleted_count
    if removed:
        chunks().delete_many({"files_id": file_id})
    return bool(removed)


def unlinked_condition():
    """A sent file none of whose messages is left (an unsent upload is the sweep's)."""
    return {"metadata.sent_in": {"$size": 0}, "metadata.unsent_since": {"$exists": False}}
