"""The contract's `Message`, built from a stored message: the one shape every path answers."""
from chatapp.schemas import iso


def public_message(doc):
    """The contract's `Message` (keeps the original API's `sender`/`receiver`/`content`)."""
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
    return out
