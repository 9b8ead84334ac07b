"""Signed download URLs: `/api/chat/attachments/<id>?expires=<unix>&sig=<hmac>`, for
`<img src>` and links that carry no Authorization header.

`sig` is HMAC-SHA256, keyed with the server's token secret (JWT_SECRET_KEY), over a purpose
label, the id and `expires`: a signature made for anything else never verifies here.
`expires` is rounded down to a step of a tenth of ATTACHMENT_URL_SECONDS (at most 5
minutes), so the URL of one attachment stays the same for that long and browsers cache it;
a URL is valid between 90% and 100% of ATTACHMENT_URL_SECONDS from when it was made.
"""
import hashlib
import hmac
import time

from flask import current_app

PURPOSE = "chatapp attachment download v1"
MAX_STEP = 300
PATH = "/api/chat/attachments/{id}"


def signed_url(attachment_id, now=None):
    """The signed path of an attachment (a path: never a host taken from the request)."""
    seconds = current_app.config["ATTACHMENT_URL_SECONDS"]
    step = max(1, min(MAX_STEP, seconds // 10))
    now = int(time.time() if now is None else now)
    expires = (now + seconds) // step * step
    return (PATH.format(id=attachment_id) +
            f"?expires={expires}&sig={signature(str(attachment_id), expires)}")


def signature(attachment_id, expires):
    key = current_app.config["JWT_SECRET_KEY"].encode()
    message = f"{PURPOSE}\n{attachment_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(attachment_id, expires, sig, now=None):
    """True when `sig` was made here for this id and `expires`, and `expires` is not past."""
    if not (isinstance(expires, str) and expires.isascii() and expires.isdigit()
            and len(expires) <= 12 and isinstance(sig, str) and sig.isascii()):
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    expected = signature(str(attachment_id), int(expires))
    return hmac.compare_digest(expected.encode(), sig.encode())
