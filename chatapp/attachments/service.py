"""Attachments: upload, the interface a send uses (`for_send`, `attached`, `detached`,
`present`), who may read one (`can_read`), and the orphan sweep.

Who may download an attachment, at the moment of the download:
- with a token: its uploader, or a current member of a conversation where it was sent in a
  message that is not deleted (`conversations.service.member_of`, the one access check);
- with a signed URL (no token; `signing.py`): anyone holding the URL until it expires, as
  long as the attachment is still reachable: not yet sent (the URL was made for its
  uploader), or sent in a message that is not deleted. A removed member's URLs thus keep
  working until they expire (at most ATTACHMENT_URL_SECONDS), as the contract allows;
  deleting the message makes it unreachable at once, signed URLs included.
Anyone else, and any unknown or malformed id, gets 404.

A message's deletion drops its link (`detached`); a file left in no message is deleted
then. An upload never sent is deleted after ATTACHMENT_ORPHAN_SECONDS (`orphans.py`).
"""
import hashlib
import logging
from datetime import datetime, timezone

from bson import ObjectId
from flask import current_app

from chatapp.attachments import content, signing, store
from chatapp.attachments.public import present  # noqa: F401 - part of this interface
from chatapp.chat import store as message_store
from chatapp.conversations import service as conversations
from chatapp.errors import ApiError, NotFound, ValidationError
from chatapp.extensions import socketio
from chatapp.schemas import parse_object_id

log = logging.getLogger(__name__)
MAX_PER_MESSAGE = 10


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "the attachment is too large"


def now():
    return datetime.now(timezone.utc)


def too_large():
    limit = current_app.config["MAX_ATTACHMENT_BYTES"]
    return PayloadTooLarge(f"an attachment is at most {limit} bytes (MAX_ATTACHMENT_BYTES)")


def upload(owner_id, filename, chunks, when=None):
    """Store `chunks` (the file's bytes, in pieces) as an upload of `owner_id`, hashing and
    sniffing as they pass; the contract's Attachment. Nothing stays stored on any error."""
    limit, when = current_app.config["MAX_ATTACHMENT_BYTES"], _to_millis(when or now())
    digest, head, size = hashlib.sha256(), bytearray(), 0
    stream = store.Upload(ObjectId(), content.clean_filename(filename))
    try:
        for data in chunks:
            size += len(data)
            if size > limit:
                raise too_large()
            if len(head) < content.SNIFF_BYTES:
                head += data[:content.SNIFF_BYTES - len(head)]
            digest.update(data)
            stream.write(data)
            socketio.sleep(0)  # hashing a big upload never holds up the other sockets
        if size == 0:
            raise ValidationError(details={"file": ["The file is empty."]})
        stream.close({"owner": owner_id, "sha256": digest.hexdigest(),
                      "content_type": content.sniff(head, whole=size == len(head)),
                      "unsent_since": when, "sent_in": []}, when)
    except BaseException:
        _abort(stream)
        raise
    return present(snapshot(store.find_file(stream.id)))


def _to_millis(when):
    """As MongoDB stores times (milliseconds), so both stores answer the same."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _abort(stream):
    try:
        stream.abort()  # deletes the chunks stored so far
    except Exception:  # noqa: BLE001 - the database went away: the original error matters
        log.warning("could not delete the chunks of an aborted upload", exc_info=True)


def snapshot(doc):
    """What a message stores of an attachment (`present` makes the contract's shape of it)."""
    meta = doc["metadata"]
    return {"id": doc["_id"], "filename": doc["filename"], "content_type": meta["content_type"],
            "size": doc["length"], "sha256": meta["sha256"], "created_at": doc["uploadDate"]}


def for_send(sender_id, ids):
    """The snapshots to store in a message whose `attachments` are `ids`: at most
    MAX_PER_MESSAGE distinct uploads of the sender, in the order given (duplicates dropped);
    else ValidationError (422) on `attachments`."""
    wanted = _distinct_ids(ids)
    if len(wanted) > MAX_PER_MESSAGE:
        raise _invalid(f"At most {MAX_PER_MESSAGE} attachments.")
    found = store.find_owned(wanted, sender_id) if wanted else {}
    missing = [str(i) for i in wanted if i not in found]
    if missing:  # another user's upload reads like an unknown one
        raise _invalid(*(f"Not an upload of yours: {i}." for i in missing))
    return [snapshot(found[i]) for i in wanted]


def _distinct_ids(ids):
    if ids is None:
        return []
    if not isinstance(ids, (list, tuple)):
        raise _invalid("Not a valid list.")
    out = []
    for value in ids:
        parsed = value if isinstance(value, ObjectId) else parse_object_id(value)
        if parsed is None:
            raise _invalid("Not a valid id (24 hex characters).")
        if parsed not in out:
            out.append(parsed)
    return out


def _invalid(*messages):
    return ValidationError(details={"attachments": list(messages)})


def attached(ids, conv_id, message_id):
    """After the message is stored: these uploads were sent in it (no orphans any more)."""
    ids = [i["id"] if isinstance(i, dict) else i for i in ids]
    if ids:
        store.add_link(ids, {"conv": conv_id, "msg": message_id})


def detached(message_id):
    """The message was deleted: its attachments are no longer reachable through it; a file
    left in no message is deleted."""
    for file_id in store.sent_in_message(message_id):
        store.drop_link(file_id, message_id)
        store.delete_file(file_id, store.unlinked_condition())


def can_read(user_id, attachment_id):
    """Its uploader, or a current member of a conversation where it was sent in a message
    that is not deleted."""
    doc = _find(attachment_id)
    return doc is not None and _may_read(user_id, doc)


def readable(user_id, attachment_id):
    """The file document, if `user_id` may read it now; else NotFound."""
    doc = _find(attachment_id)
    if doc is None or not _may_read(user_id, doc):
        raise NotFound("attachment not found")
    return doc


def _may_read(user_id, doc):
    if doc["metadata"].get("owner") == user_id:
        return True
    for link in _live_links(doc):
        try:
            conversations.member_of(user_id, link["conv"])
        except NotFound:
            continue
        return True
    return False


def signed(attachment_id, expires, sig, now_seconds=None):
    """The file document a signed URL names, if its signature holds, it has not expired and
    the attachment is still reachable (not yet sent, or in a message not deleted)."""
    doc = _find(attachment_id)
    if doc is None or not signing.verify(str(doc["_id"]), expires, sig, now_seconds):
        raise NotFound("attachment not found")
    if "unsent_since" not in doc["metadata"] and not _live_links(doc):
        raise NotFound("attachment not found")
    return doc


def _find(attachment_id):
    file_id = attachment_id if isinstance(attachment_id, ObjectId) else \
        parse_object_id(attachment_id)
    return None if file_id is None else store.find_file(file_id)


def _live_links(doc):
    """The links ({conv, msg}) whose message exists in that conversation, not deleted."""
    links = doc["metadata"].get("sent_in") or []
    found = message_store.find_messages([link["msg"] for link in links]) if links else {}
    return [link for link in links if (message := found.get(link["msg"])) is not None
            and message.get("conv") == link["conv"] and not message.get("deleted")]
