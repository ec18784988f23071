"""The service's tables (users, token hashes, searches and their queue) and their migrations.

SQLAlchemy Core, so that the same schema lives in SQLite (the default) and PostgreSQL. The schema carries a version
(`schema_version`); `migrate` brings an older database up to date when the service starts, one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from autopeft.errors import AutopeftError

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

users = sa.Table(
    "users", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("hash", sa.String(64), primary_key=True),  # sha256 of the token: the token itself is never stored
    sa.Column("user_name", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

searches = sa.Table(
    "searches", metadata,
    sa.Column("owner", sa.String(64), sa.ForeignKey("users.name"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("options", sa.Text, nullable=False),  # the submitted options (JSON), as `autopeft search` takes them
    sa.Column("trials", sa.Integer, nullable=False),  # completed trials to reach (PATCH raises it)
    sa.Column("created", sa.Float, nullable=False),  # the queue's order
    sa.Column("started", sa.Float),
    sa.Column("ended", sa.Float),
    sa.Column("error", sa.Text),
    # A request the supervisor carries out: "stop" (stop the driver), "restart" (stop it and resume at once, for
    # a raised trial count); empty when none is pending.
    sa.Column("request", sa.String(16), nullable=False, default=""),
    sa.Column("resume", sa.Boolean, nullable=False, default=False),  # the next start continues the run directory
    sa.Column("starts", sa.Integer, nullable=False, default=0),
)

SCHEMA_VERSION = 1


def _v1(connection: sa.Connection) -> None:
    metadata.create_all(connection, tables=[users, tokens, searches])


# MIGRATIONS[k] takes a database at version k to version k + 1.
MIGRATIONS: tuple[Callable[[sa.Connection], None], ...] = (_v1,)
assert len(MIGRATIONS) == SCHEMA_VERSION


class SchemaError(AutopeftError):
    pass


def migrate(engine: sa.Engine) -> int:
    """Bring the database to SCHEMA_VERSION (creating it when empty); the version it had before."""
    with engine.begin() as connection:
        schema_version.create(connection, checkfirst=True)
        found = connection.execute(sa.select(schema_version.c.version)).scalar()
        before = int(found) if found is not None else 0
        if before > SCHEMA_VERSION:
            raise SchemaError(f"the service database is at schema version {before}, newer than this autopeft's "
                              f"{SCHEMA_VERSION}; upgrade autopeft, or give another --db")
        for step in MIGRATIONS[before:]:
            step(connection)
        if found is None:
            connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif before != SCHEMA_VERSION:
            connection.execute(schema_version.update().values(version=SCHEMA_VERSION))
    return before
