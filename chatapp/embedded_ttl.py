"""TTL indexes on the embedded store: a document expires exactly as mongomock decides, but
only documents that may be due are looked at.

mongomock's own sweep reads every document of a collection with a TTL index at every
access to it (every query, every insert): with it each authenticated request, which asks
`revoked` whether its token is revoked, read every revoked token of the last month. Here
each write files the document under the moment it may expire (a heap), and an access
takes only what is due from it, then deletes what mongomock's own test
(`_value_meets_expiry`) says has expired. A document written again is filed again; its
old entry, when due, finds it not expired and is dropped.
Installed with the hashes (chatapp.embedded), and only for the embedded store.
"""
import datetime
import heapq
import itertools

import mongomock
from mongomock import helpers
from mongomock.store import CollectionStore, _get_min_datetime_from_value

_original = {}
_order = itertools.count()  # ties in the heap: never compare document ids


def install():
    if _original:
        return
    _original["_remove_expired_documents"] = CollectionStore._remove_expired_documents
    CollectionStore._remove_expired_documents = _remove_expired_documents


def _ttl_indexes(store):
    """(field, seconds) of each TTL index mongomock applies (single field, integer)."""
    out = []
    for index in store._ttl_indexes.values():
        try:
            seconds = int(index["expireAfterSeconds"])
        except ValueError:
            continue
        if len(index["key"]) == 1:
            out.append((index["key"][0][0], seconds))
    return out


class _Expiry:
    def __init__(self, store, signature):
        self.signature = signature
        self.indexes = _ttl_indexes(store)
        self.heap = []
        for doc in list(store._documents.values()):
            self.file(doc)

    def file(self, doc):
        """File `doc` under each moment it may expire (none: it never does)."""
        for field, seconds in self.indexes:
            value = _get_min_datetime_from_value(doc.get(field))
            try:
                due = value + datetime.timedelta(seconds=seconds)
                due - mongomock.utcnow()  # aware against naive: mongomock never expires it
            except (TypeError, OverflowError):
                continue
            doc_id = doc["_id"]
            doc_id = helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id
            heapq.heappush(self.heap, (due, next(_order), doc_id))

    def sweep(self, store):
        now = mongomock.utcnow()
        documents = store._documents
        while self.heap and self.heap[0][0] <= now:
            doc_id = heapq.heappop(self.heap)[2]
            doc = documents.get(doc_id)
            if doc is not None and any(
                    store._value_meets_expiry(doc.get(field), seconds, now)
                    for field, seconds in self.indexes):
                del store[doc_id]
        if len(self.heap) > 2 * len(documents) + 64:  # mostly entries of rewritten documents
            self.__init__(store, self.signature)


def _expiry(store):
    signature = (id(store._documents), *((n, id(s)) for n, s in store._ttl_indexes.items()))
    expiry = getattr(store, "_chatapp_expiry", None)
    if expiry is None or expiry.signature != signature:
        expiry = store._chatapp_expiry = _Expiry(store, signature)
    return expiry


def _remove_expired_documents(self):
    if self._ttl_indexes:
        _expiry(self).sweep(self)


def written(store, doc):
    """`doc` was inserted or changed (chatapp.embedded's hook on every write)."""
    if store._ttl_indexes:
        _expiry(store).file(doc)
