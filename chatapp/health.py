"""Liveness and readiness for load balancers and orchestrators."""
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from chatapp.extensions import mongo
from chatapp.openapi import error_doc

blp = Blueprint("health", __name__, description="Operations")


class StatusSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(metadata={"example": "mongodb"})


@blp.route("/healthz", methods=["GET"])
@blp.doc(security=[])
@blp.alt_response(200, schema=StatusSchema, description="The process serves")
def healthz():
    """Anyone: 200 while the process serves."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.doc(security=[])
@blp.alt_response(200, schema=StatusSchema, description="MongoDB answers a ping")
@blp.alt_response(503, **error_doc(503, "`unavailable`: MongoDB does not answer a ping"))
def readyz():
    """Anyone: 200 when MongoDB answers a ping, else 503 `unavailable`."""
    mongo.ping()
    return {"status": "ok", "database": "embedded" if mongo.embedded else "mongodb"}
