"""The service's records in its database: users and their token hashes, searches with their state and queue.

Every write is one transaction; the web application and the supervisor share the store through it, never through
memory, so that a restarted service finds everything where it was.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from autopeft.errors import UsageError
from autopeft.run.storage import optuna_url
from autopeft.service.schema import migrate, searches, tokens, users

STATES = ("queued", "running", "finished", "failed", "stopped")
ENDED = ("finished", "failed", "stopped")


@dataclass(frozen=True)
class User:
    name: str
    admin: bool


@dataclass(frozen=True)
class SearchRecord:
    owner: str
    id: str
    state: str
    options: dict[str, Any]
    trials: int
    created: float
    started: float | None
    ended: float | None
    error: str | None
    request: str
    resume: bool
    starts: int

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> SearchRecord:
        values = dict(row._mapping)
        values["options"] = json.loads(values["options"])
        return cls(**values)


def token_hash(token: str) -> str:
    # Tokens are 256 random bits: a plain hash cannot be reversed, and a fast one keeps each request cheap.
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, db: str) -> Store:
        """The store in this database (an SQLAlchemy URL: sqlite:///FILE or postgresql://...), migrated."""
        url = optuna_url(db)
        if not url.startswith(("sqlite:", "postgresql+psycopg:")):
            raise UsageError(f"--db {db!r}: give sqlite:///FILE or postgresql://USER@HOST[:PORT]/DATABASE")
        if url.startswith("sqlite:///"):
            folder = Path(url[len("sqlite:///"):]).parent
            if folder.is_file():
                raise UsageError(f"--db {db}: {folder} is a file, not a folder")
            if not folder.is_dir():
                raise UsageError(f"--db {db}: folder {folder} does not exist")
        try:
            engine = sa.create_engine(url, pool_pre_ping=True,
                                      connect_args={"timeout": 30} if url.startswith("sqlite:") else {})
            migrate(engine)
        except sa.exc.SQLAlchemyError as exc:
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
            raise UsageError(f"cannot open the service database {db}: {first}") from None
        return cls(engine)

    # Users and tokens.
    def create_token(self, user: str, admin: bool = False) -> str:
        """A new token for this user (created if new; --admin makes an existing one an admin); the token itself,
        which is shown once and stored only as its hash."""
        token = "apt_" + secrets.token_urlsafe(32)
        now = time.time()
        with self.engine.begin() as c:
            known = c.execute(sa.select(users.c.admin).where(users.c.name == user)).first()
            if known is None:
                c.execute(users.insert().values(name=user, admin=admin, created=now))
            elif admin and not known.admin:
                c.execute(users.update().where(users.c.name == user).values(admin=True))
            c.execute(tokens.insert().values(hash=token_hash(token), user_name=user, created=now))
        return token

    def user_of(self, token: str) -> User | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(users.c.name, users.c.admin).join(tokens, tokens.c.user_name == users.c.name)
                            .where(tokens.c.hash == token_hash(token))).first()
        return User(row.name, bool(row.admin)) if row else None

    # Searches.
    def add_search(self, owner: str, search_id: str, options: dict[str, Any], trials: int) -> SearchRecord | None:
        """The new queued search; None when this owner has one with this id already."""
        try:
            with self.engine.begin() as c:
                c.execute(searches.insert().values(owner=owner, id=search_id, state="queued", trials=trials,
                                                   options=json.dumps(options, sort_keys=True), created=time.time(),
                                                   request="", resume=False, starts=0))
        except sa.exc.IntegrityError:
            return None
        return self.get(owner, search_id)

    def get(self, owner: str, search_id: str) -> SearchRecord | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(searches).where(searches.c.owner == owner, searches.c.id == search_id)).first()
        return SearchRecord.from_row(row) if row else None

    def find(self, search_id: str, user: User) -> SearchRecord | None:
        """The user's search with this id; an admin's view takes anyone's (their own first)."""
        own = self.get(user.name, search_id)
        if own is not None or not user.admin:
            return own
        found = self.list(None, search_id=search_id)
        return found[0] if found else None

    def list(self, owner: str | None, *, states: Sequence[str] | None = None,
             search_id: str | None = None) -> list[SearchRecord]:
        query = sa.select(searches).order_by(searches.c.created)
        if owner is not None:
            query = query.where(searches.c.owner == owner)
        if states is not None:
            query = query.where(searches.c.state.in_(states))
        if search_id is not None:
            query = query.where(searches.c.id == search_id)
        with self.engine.connect() as c:
            return [SearchRecord.from_row(r) for r in c.execute(query)]

    def update(self, record: SearchRecord, *, expect_state: str | None = None, **values: Any) -> bool:
        """Set these columns; with `expect_state`, only while the search is still in that state (False if not)."""
        query = searches.update().where(searches.c.owner == record.owner, searches.c.id == record.id)
        if expect_state is not None:
            query = query.where(searches.c.state == expect_state)
        with self.engine.begin() as c:
            return c.execute(query.values(**values)).rowcount > 0
