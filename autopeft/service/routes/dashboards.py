"""/v1/searches/{id}/dashboard: a search's live Pareto dashboard, behind the caller's token."""

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from autopeft.service.context import Context, Owned
from autopeft.service.routes.searches import readable_run
from autopeft.service.store import SearchRecord
from autopeft.service.supervisor import run_dir

router = APIRouter(prefix="/v1/searches/{search_id}/dashboard", tags=["dashboards"])


def dashboard_of(context: Context, record: SearchRecord) -> Any:
    """The run's `DashboardService`: the page polls every two seconds, so a run is opened (and its database
    checked) once, not per poll."""
    from autopeft.dashboard.server import DashboardService
    from autopeft.dashboard.source import open_runs

    run: Path = run_dir(context.folders, record)
    with context.dashboards_lock:
        if run not in context.dashboards:
            context.dashboards[run] = DashboardService(open_runs([str(readable_run(context, record).path)]))
        return context.dashboards[run]


@router.get("", response_class=RedirectResponse, status_code=307)
def dashboard_redirect(record: Owned) -> RedirectResponse:
    return RedirectResponse(f"/v1/searches/{quote(record.id)}/dashboard/", status_code=307)


@router.get("/", response_class=HTMLResponse)
def dashboard(record: Owned, context: Context) -> HTMLResponse:
    """The dashboard's page; it follows the search while it runs."""
    return HTMLResponse(dashboard_of(context, record).page())


@router.get("/plotly.min.js", include_in_schema=False)
def plotly_js(record: Owned, context: Context) -> Response:
    return Response(dashboard_of(context, record).plotly_js(), media_type="application/javascript",
                    headers={"Cache-Control": "max-age=86400"})


@router.get("/api/version", include_in_schema=False)
def dashboard_version(record: Owned, context: Context) -> dict[str, str]:
    return {"version": dashboard_of(context, record).version()}


@router.get("/api/dashboard", include_in_schema=False)
def dashboard_data(record: Owned, context: Context) -> Response:
    return Response(dashboard_of(context, record).payload()[1], media_type="application/json")
