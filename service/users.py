"""Users and their API keys: created, listed and revoked from the command line, checked on
every request.

``echocxr users add NAME --role ROLE`` prints the new key once, as the last line of its output;
only its SHA-256 is stored, so a lost key is replaced (``users key NAME``), never shown again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.models import ROLES, ApiKey, User
from workers.config import Settings
from workers.db import session_scope
from workers.records import now

KEY_PREFIX = "ecx_"


class UserError(ValueError):
    """A user command that cannot be done as asked (unknown role, name taken, no such user)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_user(session: Session, *, name: str, role: str) -> tuple[User, str]:
    """A new user and their first key (returned once, stored hashed)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise UserError("a user name is 1-128 printable characters")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise UserError(f"a user named {name!r} exists; pick another name or revoke that one")
    user = User(name=name, role=role)
    session.add(user)
    session.flush()
    return user, issue_key(session, user)


def issue_key(session: Session, user: User) -> str:
    key = new_key()
    session.add(ApiKey(user_id=user.id, key_sha256=hash_key(key)))
    session.flush()
    return key


def find_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserError(f"no user named {name!r}; `echocxr users list` shows them")
    return user


def revoke_user(session: Session, name: str) -> User:
    """Revoke the user and every key of theirs; their name stays taken, for the audit trail."""
    user = find_user(session, name)
    moment = now()
    user.revoked_at = user.revoked_at or moment
    for key in session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)):
        key.revoked_at = key.revoked_at or moment
    return user


def user_for_key(session: Session, key: str) -> User | None:
    """The active user holding ``key``, or None for an unknown or revoked key."""
    found = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == hash_key(key)))
    if found is None or found.revoked_at is not None:
        return None
    user = session.get(User, found.user_id)
    return user if user is not None and user.revoked_at is None else None


app = typer.Typer(help="Users of the API and their keys.", no_args_is_help=True)


@contextmanager
def _records() -> Iterator[Session]:
    """A session on the configured database, brought up to the newest schema first."""
    from service.database import upgrade

    settings = Settings()
    upgrade(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        yield session


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user's name, as it appears on signed reports.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
) -> None:
    """Create a user; prints their API key once, as the last line."""
    try:
        with _records() as session:
            user, key = add_user(session, name=name, role=role)
            typer.echo(f"created {user.role} {user.name!r}; their API key (shown only now):")
    except (UserError, IntegrityError) as error:
        raise _fail(error) from None
    typer.echo(key)


@app.command("key")
def key(name: Annotated[str, typer.Argument(help="An existing user.")]) -> None:
    """Issue another key for a user (their other keys stay valid until revoked)."""
    try:
        with _records() as session:
            user = find_user(session, name)
            if user.revoked_at is not None:
                raise UserError(f"{name!r} is revoked; add a new user instead")
            issued = issue_key(session, user)
    except UserError as error:
        raise _fail(error) from None
    typer.echo(issued)


@app.command("list")
def list_users() -> None:
    """Every user: name, role, created, and whether revoked."""
    with _records() as session:
        users = list(session.scalars(select(User).order_by(User.created_at)))
        for user in users:
            state = f"revoked {user.revoked_at:%Y-%m-%d}" if user.revoked_at else "active"
            typer.echo(f"{user.name}\t{user.role}\t{user.created_at:%Y-%m-%d}\t{state}")


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The user to revoke.")]) -> None:
    """Revoke a user and all their keys; their signed reports keep their name."""
    try:
        with _records() as session:
            revoke_user(session, name)
    except UserError as error:
        raise _fail(error) from None
    typer.echo(f"revoked {name!r} and their keys")


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)
