"""Admin commands, with Flask's CLI: `flask --app wsgi <command>` (or `--app "chatapp:create_app()"`).

    flask --app wsgi upgrade-db          # indexes and the data upgrade, without serving
    flask --app wsgi create-user NAME EMAIL   # asks for the password (or --password)
    flask --app wsgi revoke-tokens USER  # every login of a user (id, username or email)
    flask --app wsgi show-config         # the effective settings, secrets masked

Each goes through the same services as the API (validation, hashing, revocation with the
sockets closed), never around them.
"""
import re

import click
from bson import ObjectId
from flask import current_app
from flask.cli import with_appcontext

from chatapp.errors import ApiError

SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN_KEY|_KEY$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(//[^:/@]+:)[^@/]+@")


def register_commands(app):
    for command in (upgrade_db, create_user, revoke_tokens, show_config):
        app.cli.add_command(command)


@click.command("upgrade-db")
@with_appcontext
def upgrade_db():
    """Create every index and upgrade a 1:1-only database in place; then exit."""
    from chatapp.conversations import upgrade
    from chatapp.startup import ensure_indexes

    ensure_indexes()
    click.echo(f"indexes created; {upgrade.upgrade_all()} conversation(s) upgraded")


@click.command("create-user")
@with_appcontext
@click.argument("username")
@click.argument("email")
@click.password_option(help="the password (asked for, twice, when not given)")
def create_user(username, email, password):
    """Register a user, with the same rules as POST /api/user/register."""
    from chatapp.schemas import load
    from chatapp.users import service
    from chatapp.users.schemas import RegisterSchema

    try:
        body = load(RegisterSchema(), {"username": username, "email": email,
                                       "password": password})
        user = service.register(body["username"], body["email"], body["password"])
    except ApiError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message} {exc.details or ''}".strip())
    click.echo(f"created user {user['username']} ({user['id']})")


@click.command("revoke-tokens")
@with_appcontext
@click.argument("user")
def revoke_tokens(user):
    """Revoke every login of a user (id, username or email) and close their sockets."""
    from chatapp.users import service
    from chatapp.users import store

    doc = _find_user(user, store)
    if doc is None:
        raise click.ClickException(f"no such user: {user}")
    service.logout_all(doc["_id"])
    click.echo(f"revoked every login of {doc['username']} ({doc['_id']})")


def _find_user(text, store):
    if ObjectId.is_valid(text) and len(text) == 24:
        found = store.find_user(ObjectId(text))
        if found:
            return found
    if "@" in text:
        from chatapp.users.emails import lookup_forms

        for form in lookup_forms(text):
            found = store.find_user_by_email(form)
            if found:
                return found
        return None
    return store.find_user_by_username(text)


@click.command("show-config")
@with_appcontext
def show_config():
    """Print the effective settings, secrets masked."""
    for name in sorted(current_app.config):
        if name.isupper():
            click.echo(f"{name} = {masked(name, current_app.config[name])}")


def masked(name, value):
    if value and SECRET_NAMES.search(name):
        return "****"
    if isinstance(value, str):
        return URL_PASSWORD.sub(r"\1****@", value)  # mongodb://user:pass@host, redis://...
    return value
