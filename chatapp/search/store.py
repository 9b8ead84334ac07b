"""The search's read: messages of the caller's conversations, through a text index.

The `search` text index on `messages.content` is declared with `default_language: "none"`: no
stemming and no stop words, so a word matches as written (folded for case and diacritics),
whatever the language of the message, and the embedded store answers the very same query with
MongoDB's rules (chatapp/embedded_text.py). A collection has at most one text index, and a
compound one with `conv` as a prefix would need an equality on `conv`, which a search across
all of a user's conversations cannot give: the index is on `content` alone, and the query
narrows to the caller's conversations with `conv: {$in: [...]}`.
"""
from pymongo import DESCENDING, TEXT

from chatapp.extensions import mongo

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def messages():
    return mongo.collection("messages")


def ensure_indexes():
    messages().create_index([("content", TEXT)], default_language="none", name="search")


def page(conversation_ids, search, limit, before=None):
    """Up to `limit` messages of those conversations, not deleted, matching the `$search`
    string, newest first by (created_at, _id); `before` = the message to continue after."""
    query = {"$text": {"$search": search}, "conv": {"$in": list(conversation_ids)},
             "deleted": {"$ne": True}}
    if before is not None:
        t = before["created_at"]
        query["$or"] = [{"created_at": {"$lt": t}}, {"created_at": t, "_id": {"$lt": before["_id"]}}]
    return list(messages().find(query).sort(NEWEST_FIRST).limit(limit))
