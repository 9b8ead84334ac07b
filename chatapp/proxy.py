"""The client's address and scheme behind reverse proxies, trusted only when configured.

`TRUSTED_PROXIES` = how many proxies stand in front of the app (nginx alone: 1). Then
werkzeug's ProxyFix takes the client address from that many X-Forwarded-For hops and the
scheme from X-Forwarded-Proto, for rate limits and the same-origin check alike. At 0
(the default) those headers are ignored: a client could write anything in them.
X-Forwarded-Host is never trusted (nginx passes the real Host).
"""
from werkzeug.middleware.proxy_fix import ProxyFix


def trust_proxies(app):
    """Wrap the whole WSGI app, Socket.IO included; call after `socketio.init_app`."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0,
                                x_prefix=0)
