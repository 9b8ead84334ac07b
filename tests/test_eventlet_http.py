"""chatapp/eventlet_http.py's protocol in-process (its deadlines and envelopes are tested on
a live server in tests/test_hardening_transport.py): a finished connection leaves nothing
for the cyclic collector."""
import gc
import warnings
import weakref

with warnings.catch_warnings():  # eventlet warns on import that it is in bugfix mode (wsgi.py)
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.wsgi
    from eventlet.green import socket as green_socket

from chatapp import eventlet_http


def test_a_finished_connection_is_freed_without_the_collector():
    """eventlet's environ holds a closure over its protocol; the protocol lets go of it when
    the connection ends, so the connection (buffers, sockets) is freed then, not by the
    collector, and is never kept by the embedded store's freezes (chatapp/embedded_heap.py)."""
    made = []

    class Tracked(eventlet_http.protocol(5)):
        def __init__(self, *args, **kwargs):
            made.append(weakref.ref(self))
            super().__init__(*args, **kwargs)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    listener = eventlet.listen(("127.0.0.1", 0))
    server = eventlet.spawn(eventlet.wsgi.server, listener, app, protocol=Tracked,
                            log_output=False)

    def client():
        conn = green_socket.create_connection(listener.getsockname())
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        conn.close()
        return data

    gc.collect()
    gc.disable()  # only reference counting may free it
    try:
        assert eventlet.with_timeout(5, lambda: eventlet.spawn(client).wait()).endswith(b"ok")
        for _ in range(100):  # the server's side ends its connection on its own green thread
            if made and made[0]() is None:
                break
            eventlet.sleep(0.01)
        alive = [ref for ref in made if ref() is not None]
    finally:
        gc.enable()
        server.kill()
        listener.close()
    assert len(made) == 1 and not alive
