"""Search: the messages a user can see now whose content holds every word of a query.

Who sees what is decided as everywhere else: `conversations.service.member_of` for a named
conversation (404 for one that is not yours), the caller's current memberships otherwise.
Deleted messages never match (their content is blanked anyway).

What "matches" means is MongoDB's text search (text index v3, language "none"), since that is
what serves it in production, and the embedded store reproduces it (chatapp/mongo_text.py):
`q` is split into words at whitespace and `"` (MongoDB's phrase syntax has no escape for it), and
each word is searched as a phrase. A message matches when its content, compared without case
or diacritics (simple Unicode case folding; `École` = `ecole`, `ß` != `ss`), contains every
word, punctuation included and taken literally, and at least one of the words as a whole term
(terms are cut at whitespace and punctuation, the apostrophe included). So `cat` finds
"a cat!" but not "concatenate", while `cat dog` also finds "concatenate dog". A query whose
words hold no letter or digit at all (`?!`) finds nothing.
"""
import re

from chatapp.chat import store as message_store
from chatapp.chat.public import public_messages
from chatapp.conversations import service as conversations
from chatapp.conversations import store as conversation_store
from chatapp.errors import NotFound, ValidationError
from chatapp.search import store

SEARCH_MAX = 200  # page size clamp, as for history
WORD_SEPARATORS = re.compile(r'[\s"\ufeff]+')


def words(q):
    """The words of a query: split at whitespace (and `"`, which a phrase cannot hold)."""
    return [word for word in WORD_SEPARATORS.split(q) if word]


def search_string(q):
    """MongoDB's `$search` for `q`: every word a phrase, so that every word is required (plain
    words would be OR'ed)."""
    return " ".join(f'"{word}"' for word in words(q))


def search_messages(caller_id, q, conversation=None, limit=50, before=None):
    """Messages the caller can see matching `q`, newest first, and the next page's cursor
    ({"before": id}) or None."""
    limit = min(limit, SEARCH_MAX)
    if conversation is not None:
        conversation_ids = [conversations.member_of(caller_id, conversation)["_id"]]
    else:
        conversation_ids = conversation_store.ids_for_member(caller_id)
    position = _cursor(caller_id, before) if before is not None else None
    search = search_string(q)
    if not search or not conversation_ids:
        return [], None
    page = store.page(conversation_ids, search, limit + 1, position)
    more = len(page) > limit
    page = page[:limit]
    return public_messages(page), \
        {"before": str(page[-1]["_id"])} if more else None


def _cursor(caller_id, message_id):
    """The message `before` names, if the caller can see its conversation now (else 422)."""
    doc = message_store.find_message(message_id)
    try:
        if doc is None:
            raise NotFound()
        conversations.member_of(caller_id, doc["conv"])
    except NotFound:
        raise ValidationError(details={"before": ["Not a message you can see."]}) from None
    return doc
