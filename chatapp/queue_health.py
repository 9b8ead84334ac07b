"""The Socket.IO message queue (Redis) through an outage: bounded, degraded, recovering.

What python-socketio's `RedisManager` (5.18, redis-py 8.2) does when Redis fails, measured
with the scale-out cluster (tests/test_scaleout_redis_outage.py):

- An emit is handed to this process's own sockets first and published after, and a failed
  publish is only logged: a send is stored, answered and delivered on its own process even
  with Redis down; a Redis that is gone (connection refused) costs an emit nothing. But a
  Redis that does not answer (frozen, a network partition) holds every emit, so every
  send's answer, for redis-py's default reply timeout (5 s) twice: 10.0 s per emit,
  measured against a SIGSTOPped redis-server.
- The listener sleeps 1, 2, 4 ... up to 60 s between its reconnection attempts: after a
  35 s outage, Redis back on its port was not heard for over 15 s more (the cluster test
  fails without this module); after longer outages, up to a minute. Events published
  meanwhile by the other processes are lost to this one.
- A `disconnect` of a socket held by another process (logout, logout-all, revocation) that
  could not be published is lost for good: that socket stays open until its token expires.

`GuardedRedisManager` (for `redis://` and `rediss://` queues, which Flask-SocketIO hands to
RedisManager; `chatapp.realtime` installs it), the same manager otherwise:

- publishes on a connection of its own with short timeouts (`CONNECT_TIMEOUT`,
  `REPLY_TIMEOUT`), one attempt (one more at once when a pooled connection turns out
  closed, as after a Redis restart). A failure marks the queue down;
- while it is down, publishing is skipped at once: this process's sockets already have the
  event, the other processes' sockets miss it (clients catch up through the history
  calls). Each event not published counts as `chatapp_redis_errors_total{component=
  "message_queue"}`; the log says it once when the queue goes down and once when it is back;
- a background task pings Redis every `PROBE_SECONDS` and marks it up when it answers, then
  publishes again the `disconnect` requests it could not (at once, and again a little later,
  when every process's listener has subscribed again);
- the listener reconnects at least every `LISTEN_RETRY_MAX` seconds, on its own connection
  (no read timeout: it waits for messages for as long as there are none).
"""
import logging
import threading
import time
from collections import OrderedDict

import redis
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatapp import metrics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0  # seconds to open a connection to Redis
REPLY_TIMEOUT = 2.0  # seconds for Redis to answer a PUBLISH (or the probe's PING)
PROBE_SECONDS = 1.0  # while down: how often Redis is tried again
LISTEN_RETRY_MIN, LISTEN_RETRY_MAX = 0.5, 2.0  # the listener's pause between reconnections
REPLAY_AFTER = (0, 3, 10)  # seconds after Redis is back: unpublished disconnects sent again
MAX_PENDING_DISCONNECTS = 10_000


def handles(url):
    """Whether `url` is a message queue this manager serves (Redis, as Flask-SocketIO picks it)."""
    return isinstance(url, str) and url.startswith(("redis://", "rediss://"))


class GuardedRedisManager(socketio.RedisManager):
    """python-socketio's Redis manager whose publishing never holds an emit longer than the
    timeouts above, skips Redis while it is down, and whose listener comes back promptly."""

    def __init__(self, url, channel="flask-socketio", write_only=False, logger=None, json=None):
        super().__init__(url, channel=channel, write_only=write_only, logger=logger, json=json)
        self._lock = threading.Lock()
        self._publisher = None
        self._down_since = None  # time.monotonic() of the failure, while down
        self._watching = False  # the probe task runs
        self._pending = OrderedDict()  # (sid, namespace) -> unpublished disconnect request

    @property
    def down(self):
        return self._down_since is not None

    # -- clients ---------------------------------------------------------------------------

    def _client(self, **options):
        """A client of its own (the library shares one between publishing and listening),
        failing at once rather than retrying inside redis-py."""
        return redis.Redis.from_url(self.redis_url, socket_connect_timeout=CONNECT_TIMEOUT,
                                    retry=Retry(NoBackoff(), 0), **options)

    def _publisher_client(self):
        if self._publisher is None:
            self._publisher = self._client(socket_timeout=REPLY_TIMEOUT)
        return self._publisher

    # -- publishing ------------------------------------------------------------------------

    def _publish(self, data):
        if self.down:
            self._not_published(data)
            return
        try:
            self._send(data)
            return
        except Exception as exc:  # noqa: BLE001 - whatever Redis did, the emit goes on
            error = exc
        if self._is_closed_connection(error):  # a Redis restarted under a pooled connection
            try:
                self._send(data)
                return
            except Exception as exc:  # noqa: BLE001
                error = exc
        self._went_down(error)
        self._not_published(data)

    def _send(self, data):
        self._publisher_client().publish(self.channel, self.json.dumps(data))

    @staticmethod
    def _is_closed_connection(error):
        return (isinstance(error, redis.ConnectionError)
                and not isinstance(error, redis.TimeoutError))

    def _not_published(self, data):
        metrics.redis_error("message_queue")
        if isinstance(data, dict) and data.get("method") == "disconnect":
            key = (data.get("sid"), data.get("namespace"))
            with self._lock:
                self._pending.pop(key, None)
                self._pending[key] = data
                while len(self._pending) > MAX_PENDING_DISCONNECTS:
                    self._pending.popitem(last=False)

    def _went_down(self, error):
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            start_watching = not self._watching
            self._watching = True
        log.warning("Redis message queue unreachable (%s: %s): events reach this process's "
                     "sockets only until it answers again", type(error).__name__, error)
        if start_watching:
            self._background(self._watch)

    # -- recovery --------------------------------------------------------------------------

    def _watch(self):
        """While down: ping every PROBE_SECONDS; once up, send the pending disconnects again."""
        try:
            while True:
                self._sleep(PROBE_SECONDS)
                if self.down:
                    try:
                        self._publisher_client().ping()
                    except Exception:  # noqa: BLE001 - still down
                        continue
                    self._came_back("it answers a ping")
                if self._replay_pending():
                    return
        finally:
            with self._lock:
                self._watching = False
            if self.down:  # went down again as the task was ending
                self._went_down_again()

    def _came_back(self, how):
        with self._lock:
            if self._down_since is None:
                return
            failed_for, self._down_since = time.monotonic() - self._down_since, None
        log.warning("Redis message queue is back (%s), %.1f s after a publish failed: events "
                    "reach every process again", how, failed_for)

    def _went_down_again(self):
        with self._lock:
            if self._watching:
                return
            self._watching = True
        self._background(self._watch)

    def _replay_pending(self):
        """Publish the unpublished disconnects at each of REPLAY_AFTER's moments; True when
        done, False when Redis failed again meanwhile (they stay pending)."""
        with self._lock:
            replay = list(self._pending.items())
        started = time.monotonic()
        for moment in REPLAY_AFTER:
            if not replay:
                break
            self._sleep(max(0.0, started + moment - time.monotonic()))
            for _, data in replay:
                if self.down:
                    return False
                self._publish(data)
            if self.down:
                return False
        if replay:
            log.warning("sent again %d socket disconnect(s) that the Redis outage held back",
                        len(replay))
        with self._lock:
            for key, data in replay:
                if self._pending.get(key) is data:
                    del self._pending[key]
        return True

    def _background(self, target):
        if self.server is not None:
            self.server.start_background_task(target)
        else:  # a write-only manager used on its own
            threading.Thread(target=target, daemon=True).start()

    def _sleep(self, seconds):
        if self.server is not None:
            self.server.sleep(seconds)
        else:
            time.sleep(seconds)

    # -- listening -------------------------------------------------------------------------

    def _redis_listen_with_retries(self):
        """The library's listener loop with a short pause between attempts and a connection
        of its own (no read timeout: a quiet channel is not a failure)."""
        pause, failing_since = LISTEN_RETRY_MIN, None
        while True:
            pubsub = None
            try:
                pubsub = self._client(socket_timeout=None).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.pubsub = pubsub
                if failing_since is not None:
                    log.warning("Redis message queue: receiving again after %.1f s",
                                time.monotonic() - failing_since)
                self._came_back("the listener subscribed again")  # no wait for the probe
                pause, failing_since = LISTEN_RETRY_MIN, None
                yield from pubsub.listen()
            except Exception as exc:  # noqa: BLE001 - reconnect, whatever went wrong
                metrics.redis_error("message_queue")
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("Redis message queue: cannot receive (%s: %s); retrying every "
                                "%.0f s at most", type(exc).__name__, exc, LISTEN_RETRY_MAX)
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - it is broken already
                        pass
                self._sleep(pause)
                pause = min(pause * 2, LISTEN_RETRY_MAX)
