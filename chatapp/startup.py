"""Start-up work: every index each store's queries rely on, declared idempotently."""
from chatapp.chat import store as chat_store
from chatapp.users import store as user_store


def ensure_indexes():
    user_store.ensure_indexes()
    chat_store.ensure_indexes()
