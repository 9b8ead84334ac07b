"""Extensions, created unbound; `create_app` binds them (cookiecutter-flask style)."""
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_socketio import SocketIO

from chatapp.db import Mongo
from chatapp.openapi import ChatApi

socketio = SocketIO()
jwt = JWTManager()
api = ChatApi()  # documents chatapp's error envelope (chatapp/openapi.py)
mongo = Mongo()
# Keyed by client address unless a limit says otherwise (chatapp/limits.py); the address
# is request.remote_addr, corrected behind TRUSTED_PROXIES only (chatapp/proxy.py).
limiter = Limiter(key_func=get_remote_address)
