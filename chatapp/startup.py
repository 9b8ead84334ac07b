"""Start-up work: every index each store's queries rely on, declared idempotently, then
the in-place upgrade of a database written by the 1:1-only version (chatapp.conversations.upgrade).

A database that is down at start-up does not stop the process (it serves 503s and
/healthz meanwhile); the indexes are then created as soon as it answers, without a
restart, because the unique ones are what keeps usernames, emails and retried
messages from being stored twice. A process stopped while that work runs (its client closed
under it) says so in one line, not with an error: the next start does the work again.
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
    client = mongo.client
    if _try_ensure_indexes(app, client):
        return
    socketio.start_background_task(_retry, app, client)


def _try_ensure_indexes(app, client):
    """True when done, or when retrying cannot help (an error other than the database down,
    or the process stopping)."""
    upgrade.reset()  # this app's database has not been looked at yet
    with app.app_context():
        try:
            ensure_indexes()
        except Exception as exc:  # noqa: BLE001 - the database refused one: logged once, served on
            if _stopped(client, "index creation"):
                return True
            if isinstance(exc, DB_DOWN_ERRORS):
                log.warning("database unreachable, indexes not created yet (retrying every "
                            "%ss): %s", RETRY_SECONDS, exc)
                return False
            log.exception("could not create the indexes; the app serves on without them")
        return _try_upgrade(client)


def _try_upgrade(client):
    """The in-place upgrade of a 1:1-only database; until it has run, each pair is upgraded
    when first used (chatapp.conversations.upgrade)."""
    try:
        upgrade.upgrade_all()
    except Exception as exc:  # noqa: BLE001 - logged once; pairs are upgraded as they are used
        if _stopped(client, "the start-up upgrade"):
            return True
        if isinstance(exc, DB_DOWN_ERRORS):
            log.warning("database unreachable, upgrade not run yet (retrying every %ss): %s",
                        RETRY_SECONDS, exc)
            return False
        log.exception("could not run the start-up upgrade; pairs are upgraded as they are used")
    return True


def _stopped(client, work):
    """True (said in one line) when `client` is no longer the process's: closed as the
    process stops (wsgi.py), or replaced by another app; what failed is that, not the work."""
    if mongo.client is client:
        return False
    log.info("%s stopped: the database client was closed under it (the next start does it)",
             work)
    return True


def _retry(app, client):
    # Ends when another create_app() has replaced the client (tests build many apps), or when
    # the process closes it.
    while mongo.client is client:
        socketio.sleep(RETRY_SECONDS)
        if mongo.client is client and _try_ensure_indexes(app, client):
            log.info("database reachable again: index creation done")
            return
