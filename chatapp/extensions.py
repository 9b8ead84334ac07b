"""Extensions, created unbound; `create_app` binds them (cookiecutter-flask style)."""
from flask_jwt_extended import JWTManager
from flask_socketio import SocketIO

from chatapp.db import Mongo
from chatapp.openapi import ChatApi

socketio = SocketIO()
jwt = JWTManager()
api = ChatApi()  # documents chatapp's error envelope (chatapp/openapi.py)
mongo = Mongo()
