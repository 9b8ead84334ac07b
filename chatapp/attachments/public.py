"""The contract's `Attachment`, from what a message stores of one (its snapshot).

Apart from the service so that `chatapp.chat.public` (every Message) can use it without
importing who may read what.
"""
from chatapp.attachments import signing
from chatapp.schemas import iso


def present(snap, now_seconds=None):
    """The contract's Attachment, with a freshly signed `url`."""
    return {"id": str(snap["id"]), "filename": snap["filename"],
            "content_type": snap["content_type"], "size": snap["size"], "sha256": snap["sha256"],
            "url": signing.signed_url(str(snap["id"]), now_seconds),
            "created_at": iso(snap["created_at"])}
