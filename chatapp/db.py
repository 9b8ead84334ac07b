"""The one MongoDB client of the process: real PyMongo, or mongomock when no URL is set."""
import logging

import pymongo

log = logging.getLogger(__name__)

EMBEDDED_WARNING = (
    "MONGO_DB_URL is not set: using the EMBEDDED IN-MEMORY store (mongomock). "
    "All data is lost when the process exits. Set MONGO_DB_URL=mongodb://host:27017/chatapp "
    "to use MongoDB."
)


class Mongo:
    """Holds the client and database; bound by `init_app`, closed on shutdown."""

    def __init__(self):
        self.client = None
        self.db = None
        self.embedded = False
        self._collections = (None, {})

    def init_app(self, app):
        uri = app.config.get("MONGO_URI")
        timeout = app.config["MONGO_TIMEOUT_MS"]
        if self.client is not None:
            self.close()
        if uri:
            self.client = pymongo.MongoClient(
                uri,
                serverSelectionTimeoutMS=timeout,
                connectTimeoutMS=timeout,
                socketTimeoutMS=max(timeout * 5, 10_000),
                tz_aware=True,
                uuidRepresentation="standard",
            )
            self.embedded = False
            name = self.client.get_default_database(app.config["MONGO_DB_NAME"]).name
        else:
            import mongomock

            from chatapp import embedded, embedded_heap

            embedded.install()  # hashed indexes: mongomock alone scans on every query
            embedded_heap.configure(app.config["EMBEDDED_FREEZE_EVERY"])
            self.client = mongomock.MongoClient(tz_aware=True)
            self.embedded = True
            name = app.config["MONGO_DB_NAME"]
            if not app.testing:
                log.warning(EMBEDDED_WARNING)
        self.db = self.client[name]
        app.extensions["mongo"] = self

    def collection(self, name):
        """`db[name]`, made once per database: PyMongo and mongomock build a new Collection
        object on every access (mongomock: its options copied too), several per message."""
        db, made = self._collections
        if db is not self.db:
            db, made = self._collections = (self.db, {})
        found = made.get(name)
        if found is None:
            found = made[name] = db[name]
        return found

    def ping(self):
        self.client.admin.command("ping")

    def close(self):
        if self.client is not None:
            self.client.close()
        self.client = None
        self.db = None
