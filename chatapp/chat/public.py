"""The contract's `Message`, built from stored messages: the one shape every path answers.

A reply's preview (`reply_to`) is read from the original at the moment of answering, so it
follows the original's edits and deletion; a page of messages reads its originals in one
query (`public_messages`).
"""
from chatapp.attachments import public as attachments
from chatapp.chat import store
from chatapp.schemas import iso

PREVIEW_LENGTH = 100  # code points of the original's content in a reply's preview


def public_message(doc, originals=None):
    """The contract's `Message` (keeps the original API's `sender`/`receiver`/`content`).
    `originals`: the replied-to messages by id, when already read (else read here)."""
    message_id = str(doc["_id"])
    receiver = doc.get("receiver")
    out = {
        "id": message_id,
        "_id": message_id,
        "seq": doc["seq"],
        "sender": str(doc["sender"]),
        "receiver": str(receiver) if receiver is not None else None,
        "content": doc["content"],
        "timestamp": iso(doc["created_at"]),
        "delivered_at": iso(doc.get("delivered_at")),
        "read_at": iso(doc.get("read_at")),
        "edited_at": iso(doc.get("edited_at")),
        "deleted": bool(doc.get("deleted", False)),
    }
    if doc.get("client_id") is not None:
        out["client_id"] = doc["client_id"]
    out["conversation"] = str(doc["conv"])
    # Messages stored before versions existed took one change each: their seq bounds it.
    out["version"] = doc.get("version", doc["seq"])
    out["reply_to"] = _preview(doc.get("reply_to"), originals)
    out["reactions"] = reactions(doc)
    out["attachments"] = [] if out["deleted"] else \
        [attachments.present(snap) for snap in doc.get("attachments") or ()]
    return out


def public_messages(docs):
    """Several messages, reading every replied-to original in one query."""
    wanted = {doc["reply_to"] for doc in docs if doc.get("reply_to") is not None}
    originals = store.find_messages(wanted) if wanted else {}
    return [public_message(doc, originals) for doc in docs]


def _preview(original_id, originals):
    if original_id is None:
        return None
    original = originals.get(original_id) if originals is not None \
        else store.find_message(original_id)
    if original is None:  # never happens: messages are blanked, not removed
        return {"id": str(original_id), "sender": None, "content": "", "deleted": True}
    deleted = bool(original.get("deleted", False))
    return {"id": str(original_id), "sender": str(original["sender"]),
            "content": "" if deleted else original["content"][:PREVIEW_LENGTH],
            "deleted": deleted}


def emoji_key(emoji):
    """A reaction's emoji as a field name MongoDB accepts (no `.` or leading `$`)."""
    return emoji.encode("utf-8").hex()


def reactions(doc):
    """`{"<emoji>": [user id, ...]}`: emoji in the order first used, users in the order
    they reacted; an emoji nobody reacts with any more is left out."""
    stored = doc.get("reactions") or {}
    out = {}
    for key in doc.get("reaction_keys") or ():
        users = stored.get(key)
        if users:
            out[bytes.fromhex(key).decode("utf-8")] = [str(u) for u in users]
    return out
