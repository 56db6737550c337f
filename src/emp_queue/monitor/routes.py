"""``GET /monitor`` (the page) and ``/monitor/static/*`` (its modules and styles)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# The page's files change with each release of the package, not while it runs: a browser
# may keep them but must check with the server first, so an upgrade shows at the next load.
REVALIDATE = {"Cache-Control": "no-cache"}


class RevalidatedStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(REVALIDATE)
        return response


# The page runs only its own modules and styles (no inline script or style), talks only to
# this origin, shows job outputs wherever they are stored, and may not be framed.
PAGE_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def monitor_page() -> FileResponse:
    """The monitor's single page; it logs in with an admin key typed by the operator."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={**REVALIDATE, **PAGE_SECURITY}
    )


def mount_monitor(app: FastAPI) -> None:
    """Serve the page at ``/monitor`` and its files under ``/monitor/static``."""
    for path in ("/monitor", "/monitor/"):
        app.add_api_route(
            path,
            monitor_page,
            methods=["GET"],
            include_in_schema=False,
            response_class=FileResponse,
        )
    app.mount("/monitor/static", RevalidatedStaticFiles(directory=STATIC_DIR), name="monitor")
