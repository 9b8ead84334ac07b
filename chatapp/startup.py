"""Start-up work: every index each store's queries rely on, declared idempotently, then
the in-place upgrade of a database written by the 1:1-only version (chatapp.conversations.upgrade).

A database that is down at start-up does not stop the process (it serves 503s and
/healthz meanwhile); the indexes are then created as soon as it answers, without a
restart, because the unique ones are what keeps usernames, emails and retried
messages from being stored twice.
"""
import logging

from chatapp.attachments import store as attachment_store
from chatapp.blocks import store as block_store
from chatapp.chat import store as chat_store
from chatapp.conversations import store as conversation_store
from chatapp.conversations import upgrade
from chatapp.errors import DB_DOWN_ERRORS
from chatapp.extensions import mongo, socketio
from chatapp.search import store as search_store
from chatapp.sync import store as sync_store
from chatapp.users import store as user_store

log = logging.getLogger(__name__)
RETRY_SECONDS = 5


def ensure_indexes():
    user_store.ensure_indexes()
    chat_store.ensure_indexes()
    conversation_store.ensure_indexes()
    sync_store.ensure_indexes()
    attachment_store.ensure_indexes()
    search_store.ensure_indexes()
    block_store.ensure_indexes()


def ensure_indexes_or_retry(app):
    """Create the indexes now, or keep trying in the background until the database answers."""
    if _try_ensure_indexes(app):
        return
    socketio.start_background_task(_retry, app, mongo.client)


def _try_ensure_indexes(app):
    """True when done, or when retrying cannot help (an error other than the database down)."""
    upgrade.reset()  # this app's database has not been looked at yet
    with app.app_context():
        try:
            ensure_indexes()
        except DB_DOWN_ERRORS as exc:
            log.warning("database unreachable, indexes not created yet (retrying every %ss): %s",
                        RETRY_SECONDS, exc)
            return False
        except Exception:  # noqa: BLE001 - the database refused one: logged once, served on
            log.exception("could not create the indexes; the app serves on without them")
        return _try_upgrade()


def _try_upgrade():
    """The in-place upgrade of a 1:1-only database; until it has run, each pair is upgraded
    when first used (chatapp.conversations.upgrade)."""
    try:
        upgrade.upgrade_all()
    except DB_DOWN_ERRORS as exc:
        log.warning("database unreachable, upgrade not run yet (retrying every %ss): %s",
                    RETRY_SECONDS, exc)
        return False
    except Exception:  # noqa: BLE001 - logged once; pairs are upgraded as they are used
        log.exception("could not run the start-up upgrade; pairs are upgraded as they are used")
    return True


def _retry(app, client):
    # Ends when another create_app() has replaced the client (tests build many apps).
    while mongo.client is client:
        socketio.sleep(RETRY_SECONDS)
        if mongo.client is client and _try_ensure_indexes(app):
            log.info("database reachable again: index creation done")
            return
