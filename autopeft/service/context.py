"""What every route of the service depends on (FastAPI's `Depends`): the service's parts, the caller, and the
caller's own search."""

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from autopeft.errors import UsageError
from autopeft.service.guard import BODY_LIMIT
from autopeft.service.requests import Folders, check_id
from autopeft.service.store import SearchRecord, Store, User
from autopeft.service.supervisor import Limits, Supervisor

COOKIE = "autopeft_token"


@dataclass(frozen=True)
class ServiceConfig:
    folders: Folders
    ray_address: str | None = None
    body_limit: int = BODY_LIMIT
    events_seconds: float = 1.0  # how often an events stream looks for progress
    limits: Limits = field(default_factory=Limits)
    track_uri: str | None = None  # `autopeft serve --track-uri`: the MLflow server of searches with track: mlflow


@dataclass
class ServiceContext:
    """The service's parts, made once by `create_app` and shared by every request."""

    store: Store
    config: ServiceConfig
    supervisor: Supervisor | None
    dashboards: dict[Path, Any] = field(default_factory=dict)  # run -> its DashboardService, opened once
    dashboards_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def folders(self) -> Folders:
        return self.config.folders

    def wake(self) -> None:
        """The supervisor acts on a change at once, not at its next poll."""
        if self.supervisor is not None:
            self.supervisor.wake.set()


def service_context(request: Request) -> ServiceContext:
    return request.app.state.context


Context = Annotated[ServiceContext, Depends(service_context)]


def caller(request: Request, context: Context) -> User:
    """The user whose token the request carries (an `Authorization: Bearer` header, or a browser's cookie)."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    user = context.store.user_of(token) if token else None
    if user is None:
        raise HTTPException(401, "a valid token is needed (Authorization: Bearer TOKEN); create one with "
                            "autopeft serve token create --user NAME", headers={"WWW-Authenticate": "Bearer"})
    return user


Caller = Annotated[User, Depends(caller)]


def owned_search(search_id: str, user: Caller, context: Context) -> SearchRecord:
    """The caller's search with this id (an admin's: anyone's); another user's answers 404, as one that does not
    exist."""
    try:
        check_id(search_id)
    except UsageError:
        raise HTTPException(404, f"no search {search_id!r}") from None
    record = context.store.find(search_id, user)
    if record is None:
        raise HTTPException(404, f"no search {search_id!r}")
    return record


Owned = Annotated[SearchRecord, Depends(owned_search)]
