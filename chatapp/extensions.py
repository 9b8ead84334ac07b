"""Extensions, created unbound; `create_app` binds them (cookiecutter-flask style)."""
from flask_jwt_extended import JWTManager
from flask_smorest import Api
from flask_socketio import SocketIO

from chatapp.db import Mongo

socketio = SocketIO()
jwt = JWTManager()
api = Api()
mongo = Mongo()
