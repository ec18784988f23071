"""What a browser opens: the health check, /login (sets the token as a cookie), the searches page, and the API's
own documentation, Swagger UI served from a package's files (`fastapi-offline`), so that it works offline."""

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from autopeft.service.context import COOKIE, Caller, Context
from autopeft.service.routes.searches import status_of
from autopeft.service.store import User
from autopeft.version import __version__

router = APIRouter()
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


@router.get("/healthz", tags=["service"])
def healthz() -> dict[str, Any]:
    """Whether the service answers, and its version; needs no token."""
    return {"ok": True, "version": __version__}


@router.get("/login", tags=["service"], response_class=RedirectResponse, status_code=303)
def login(context: Context, token: str, next: str = "/") -> Response:
    """Sets the token as a cookie for a browser, then goes on to `next` (a path on this service)."""
    if context.store.user_of(token) is None:
        raise HTTPException(401, "that token is not valid")
    # Only a path on this service: "//host" and "/\\host" would send the browser elsewhere.
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, user: Caller) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs", include_in_schema=False)
def docs(user: Caller) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="autopeft API",
                               swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs/assets/swagger-ui.css",
                               swagger_favicon_url="/docs/assets/favicon.png")


@router.get("/docs/assets/{name}", include_in_schema=False)
def docs_asset(name: str) -> FileResponse:
    """Swagger UI's own files, from the installed `fastapi-offline` package (no CDN: the service may have no
    internet, and a page that loads scripts from elsewhere leaks who reads it)."""
    if name not in DOCS_ASSETS:
        raise HTTPException(404, f"no such file {name!r}")
    return FileResponse(_assets() / name, headers={"Cache-Control": "max-age=86400"})


def _assets() -> Path:
    from importlib import resources

    return Path(str(resources.files("fastapi_offline").joinpath("static")))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def searches_page(user: Caller, context: Context) -> HTMLResponse:
    records = context.store.list(None if user.admin else user.name)
    return HTMLResponse(searches_html(user, [status_of(context, r) for r in records]))


def searches_html(user: User, rows: list[dict[str, Any]]) -> str:
    """The caller's searches as one page, refreshed every five seconds."""
    def cell(value: Any) -> str:
        return f"<td>{html.escape('' if value is None else str(value))}</td>"

    body = []
    for r in rows:
        link = f"/v1/searches/{quote(r['id'])}"
        best = f"{r['best_accuracy']:.4f}" if r["best_accuracy"] is not None else None
        body.append(f"<tr data-search='{html.escape(r['id'])}' data-state='{r['state']}'>"
                    + (cell(r["owner"]) if user.admin else "") + cell(r["id"]) + cell(r["state"])
                    + cell(f"{r['trials_done']} of {r['trials']}") + cell(best) + cell(r["front_size"])
                    + cell(r["options"].get("task")) + cell(r["error"])
                    + f"<td><a href='{link}/dashboard/'>dashboard</a> · <a href='{link}/log'>log</a> · "
                    f"<a href='{link}/export'>export</a></td></tr>")
    head = ("<th>owner</th>" if user.admin else "") + "".join(
        f"<th>{h}</th>" for h in ("search", "state", "trials", "best accuracy", "front", "task", "error", ""))
    # The table is fetched again every five seconds and swapped in place (a reload would lose the scroll).
    script = ("<script>setInterval(async () => { const r = await fetch(location.pathname, {cache: 'no-store'});"
              " if (!r.ok) return; const doc = new DOMParser().parseFromString(await r.text(), 'text/html');"
              " document.getElementById('searches').replaceWith(doc.getElementById('searches')); }, 5000);"
              "</script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>autopeft: searches of {html.escape(user.name)}</title><style>body{{font-family:sans-serif}}"
            f"td,th{{padding:4px 10px;text-align:left}}</style></head><body><h1>autopeft searches of "
            f"{html.escape(user.name)}</h1><table id='searches'><tr>{head}</tr>{''.join(body)}</table>"
            f"<p>{len(rows)} searches. Submit with <code>autopeft submit</code> or POST /v1/searches "
            f"(<a href='/docs'>API</a>).</p>{script}</body></html>")
