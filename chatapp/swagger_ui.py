"""Swagger UI's own files for `/api/docs`, served by chatapp: the page works with no internet.

flask-smorest renders `/api/docs` and loads Swagger UI's script and stylesheet from
OPENAPI_SWAGGER_UI_URL. When that setting is a path on this server (config.py: it is), this
blueprint serves the files there from the `flask-swagger-ui` package, which ships Swagger UI's
release files (`dist/`) and is pinned in requirements.txt. Only the files, not that package's
own blueprint: flask-smorest already renders the page. A full URL (another host) serves nothing
here. Not in the OpenAPI document: a plain Flask blueprint, as the chat page is.
"""
from importlib.resources import files

from flask import Blueprint

DIST = files("flask_swagger_ui") / "dist"


def init_app(app):
    url = app.config.get("OPENAPI_SWAGGER_UI_URL") or ""
    if not url.startswith("/"):
        return
    app.register_blueprint(Blueprint("swagger_ui", __name__, static_folder=str(DIST),
                                     static_url_path=url.rstrip("/")))
