"""The HTTP application (FastAPI): routes under /v1 (`autopeft.service.routes`), bearer tokens, one owner per search.

Every route but /healthz and /login needs a token, from an `Authorization: Bearer` header or, for a browser, the
cookie /login sets (`autopeft.service.context.caller`). Another user's search answers 404, as one that does not
exist; an admin sees every search. Bad input answers 422 with the same one line `autopeft search` prints: a request
body is checked by its pydantic model (`autopeft.service.models`, generated from the search options), a body too
large or nested too deep never reaches a route (`autopeft.service.guard`).
"""

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from autopeft.errors import AutopeftError, ExportError, ModelError, SpecError, TaskError, UsageError
from autopeft.service.context import ServiceConfig, ServiceContext
from autopeft.service.guard import BodyGuard
from autopeft.service.models import first_error_line
from autopeft.service.routes import dashboards, pages, searches
from autopeft.service.store import Store
from autopeft.service.supervisor import Supervisor
from autopeft.version import __version__

__all__ = ["ServiceConfig", "create_app"]


def create_app(store: Store, config: ServiceConfig, supervisor: Supervisor | None) -> FastAPI:
    """The application; with a supervisor, it runs the searches too (started and stopped with the app)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if supervisor is not None:
            supervisor.recover()
            supervisor.start()
        yield
        if supervisor is not None:
            supervisor.shutdown()

    # The OpenAPI document and its page are behind a token too: routes of our own (`pages`), not FastAPI's.
    app = FastAPI(title="autopeft", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Multi-objective PEFT configuration search as a service.")
    app.state.context = ServiceContext(store, config, supervisor)
    app.add_middleware(BodyGuard, limit=config.body_limit)
    app.include_router(pages.router)
    app.include_router(searches.router)
    app.include_router(dashboards.router)

    @app.exception_handler(AutopeftError)
    async def autopeft_error(_: Request, exc: AutopeftError) -> JSONResponse:
        status = 422 if isinstance(exc, UsageError | SpecError | TaskError | ModelError | ExportError) else 409
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(first_error_line(list(exc.errors())).split())}, status_code=422)

    return app
