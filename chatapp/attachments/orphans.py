"""Uploads never sent in a message are deleted ATTACHMENT_ORPHAN_SECONDS after their upload.

A TTL index cannot do it (it would delete the files document and leave the chunks), so each
process sweeps every ATTACHMENT_SWEEP_SECONDS in a background task (0: never; the tests call
`sweep_orphans` with a clock of their own). Sweeps of several processes may overlap: each
deletion is conditional, and an upload sent meanwhile is kept.
"""
import logging
import os
import threading
from datetime import timedelta

from flask import current_app

from chatapp.attachments import service, store
from chatapp.extensions import socketio

log = logging.getLogger(__name__)
SWEEP_BATCH = 100
_sweeper_in = None  # the pid whose sweeper runs: a forked worker starts its own
_lock = threading.Lock()


def sweep_orphans(when=None):
    """Delete the uploads never sent in a message and older than ATTACHMENT_ORPHAN_SECONDS
    (at `when`, default now); how many were deleted."""
    age = timedelta(seconds=current_app.config["ATTACHMENT_ORPHAN_SECONDS"])
    cutoff, deleted = (when or service.now()) - age, 0
    while True:
        batch, before = store.orphans(cutoff, SWEEP_BATCH), deleted
        for file_id in batch:
            # Still unsent and old: an upload sent meanwhile is kept.
            deleted += store.delete_file(file_id, {"metadata.unsent_since": {"$lt": cutoff}})
        if len(batch) < SWEEP_BATCH or deleted == before:
            return deleted
        socketio.sleep(0)


def start_sweeper(app):
    """This process's orphan sweep, every ATTACHMENT_SWEEP_SECONDS (once per process)."""
    global _sweeper_in
    interval = app.config["ATTACHMENT_SWEEP_SECONDS"]
    if not interval or _sweeper_in == os.getpid():
        return
    with _lock:
        if _sweeper_in == os.getpid():
            return
        _sweeper_in = os.getpid()
    socketio.start_background_task(_sweep_forever, app, interval)


def _sweep_forever(app, interval):
    while True:
        socketio.sleep(interval)
        with app.app_context():
            try:
                removed = sweep_orphans()
            except Exception:  # noqa: BLE001 - database down: the next round tries again
                log.warning("attachment orphan sweep failed", exc_info=True)
                continue
            if removed:
                log.info("attachment orphan sweep: %d unsent uploads deleted", removed)
