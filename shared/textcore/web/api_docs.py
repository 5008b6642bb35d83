"""The interactive API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``), served by the service itself.

FastAPI's own pages load their JavaScript and CSS from a public CDN: on a network that cannot reach the
internet (a bank's) they are blank, and a script fetched from a third party at every visit is one more
supplier to trust. Here the pages name only the service's own paths (`ASSET_PATHS`, below ``/docs/static/``),
which answer the files an installed package ships: the ``fastapi-offline`` distribution (MIT), which carries
Swagger UI 5 (Apache-2.0; 4.x cannot render the OpenAPI 3.1 documents FastAPI writes) and ReDoc 2's
standalone bundle (MIT). Like the pages, they are open without an API key (`textcore.web.auth.OPEN_PATHS`)
and answer whatever query they are sent (they are no FastAPI path operations).

Each page carries its own Content-Security-Policy, which the security headers middleware keeps: scripts,
styles, images and requests from the service alone (``'self'``; images ``data:`` too, the icons Swagger UI's
CSS embeds), ``frame-ancestors 'none'`` as on every response. The one inline script of a Swagger UI page (the
call that starts Swagger UI with the document's URL) is allowed by its SHA-256 hash, computed from the page as
sent, so the policy names exactly that script and no other; a nonce would do the same but change with every
response. ReDoc writes its styles into ``<style>`` elements as it renders (styled-components) and runs its
search in a worker built from a ``blob:`` URL, so the ReDoc page's policy also allows inline styles and
``blob:`` workers; its scripts are still the service's own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

DOCS = "/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC = "/redoc"
STATIC = "/docs/static"
# path -> (file in the package's folder, media type)
ASSETS = {
    f"{STATIC}/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    f"{STATIC}/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    f"{STATIC}/redoc.standalone.js": ("redoc.standalone.js", "text/javascript; charset=utf-8"),
    f"{STATIC}/favicon.png": ("favicon.png", "image/png"),
}
ASSET_PATHS = frozenset(ASSETS)
PAGE_PATHS = frozenset({DOCS, OAUTH2_REDIRECT, REDOC})
# The files are those of one installed version: a browser may keep them an hour.
ASSET_CACHE = "public, max-age=3600"
_POLICY = (
    "default-src 'none'; script-src 'self'{scripts}; style-src 'self'{styles}; img-src 'self' data:; "
    "connect-src 'self'; worker-src {workers}; base-uri 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def asset_folder() -> Path:
    """The folder of the installed ``fastapi-offline`` distribution that holds the docs' files.

    Raises:
        FileNotFoundError: one of the files the pages name is not there.
    """
    folder = Path(str(files("fastapi_offline"))) / "static"
    missing = [name for name, _ in ASSETS.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"expected the API docs' files {', '.join(missing)} in {folder}, found none; reinstall "
            "fastapi-offline (pip install 'fastapi-offline>=1.7.7,<2')"
        )
    return folder


def content_security_policy(html: str, *, inline_styles: bool = False, blob_workers: bool = False) -> str:
    """The policy of a docs page: the service's own files, and the page's inline scripts by their hashes."""
    hashes = [hashlib.sha256(script.encode()).digest() for script in _INLINE_SCRIPT.findall(html)]
    scripts = "".join(f" 'sha256-{base64.b64encode(digest).decode()}'" for digest in hashes)
    return _POLICY.format(
        scripts=scripts,
        styles=" 'unsafe-inline'" if inline_styles else "",
        workers="'self' blob:" if blob_workers else "'self'",
    )


def _with_policy(page: HTMLResponse, **allow: bool) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = content_security_policy(bytes(page.body).decode(), **allow)
    return page


def install_api_docs(app: FastAPI) -> None:
    """Serve `app`'s docs pages and their files from the service itself (the app is built with
    ``docs_url=None, redoc_url=None``, so FastAPI adds none of its own)."""
    folder = asset_folder()
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        return _with_policy(page)

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return _with_policy(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC}/favicon.png",
            with_google_fonts=False,
        )
        return _with_policy(page, inline_styles=True, blob_workers=True)

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)
    for path, (name, media_type) in ASSETS.items():
        app.add_route(path, _asset(folder / name, media_type), include_in_schema=False)


def _asset(file: Path, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return FileResponse(file, media_type=media_type, headers={"Cache-Control": ASSET_CACHE})

    return serve
