"""The studio's web app: create_app() assembles the routes (nst.serve.routes: the page and the HTTP API of
docs/http-api.md), the error handlers (errors are JSON `{"error": "one line"}` with a 4xx status) and the Guard.

Every request passes the Guard first: the Host header must be one of ALLOWED_HOSTS (when given: a
loopback server refuses other names, against DNS rebinding), and every /api call must be same-origin
and carry the token (when the server has one). A failure nobody foresaw is answered 500 with one line and
logged as one line on the server's console (the traceback only with NST_DEBUG=1).
"""
from __future__ import annotations

import hmac
import os
import sys
import traceback
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from nst.contract.failures import first_line
from nst.errors import printable
from nst.serve.catalog import describe
from nst.serve.estimate import Estimator
from nst.serve.forms import Limits
from nst.serve.jobs import JobStore, Worker
from nst.serve.routes import ApiError, router

STATIC = ("index.html", "app.js", "style.css", "examples/content.jpg", "examples/style.jpg")
TOKEN_HEADER = "x-nst-token"


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Guard:
    """ASGI middleware: Host header, same origin and token checks (see the module docstring)."""

    def __init__(self, app, token: str | None, allowed_hosts: list[str] | None) -> None:
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem is not None:
                await error_response(*problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def problem(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.allowed_hosts is not None and name.lower() not in self.allowed_hosts:
            return 403, f"host '{host[:60]}' refused: this server answers only to {', '.join(self.allowed_hosts)}"
        if not scope["path"].startswith("/api/"):
            return None
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return 403, "cross-origin request refused"
        if self.token is None:
            return None
        given = headers.get(TOKEN_HEADER)
        if given is None and headers.get("authorization", "").startswith("Bearer "):
            given = headers["authorization"][len("Bearer "):]
        if given is None:
            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        if given is None:
            return 401, ("this server needs its token: send the header X-NST-Token (or open the URL that "
                         "nst serve printed)")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, "wrong token"
        return None


class Failures:
    """ASGI middleware: an exception from a route becomes a 500 with the one-line message `nst run` would print,
    and one line on stderr (uvicorn would print its traceback)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            line = f"unexpected failure ({first_line(exc)}); set NST_DEBUG=1 for the traceback"
            print(printable(f"nst studio: {scope.get('method')} {scope.get('path')}: {line}"), file=sys.stderr,
                  flush=True)
            if os.environ.get("NST_DEBUG"):
                traceback.print_exception(exc)
            if not started:
                await error_response(500, line)(scope, receive, send)


def static_files() -> dict[str, bytes]:
    folder = files("nst.serve") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


def create_app(data: str | Path, device: str = "auto", token: str | None = None, host=None, limits: Limits | None = None,
               allowed_hosts: list[str] | None = None, preview_seconds: float = 0.25) -> FastAPI:
    """The studio app: jobs and settings kept in DATA, run on DEVICE through HOST (default: the installed
    plugins); TOKEN required on every API call when given; ALLOWED_HOSTS: Host header names accepted
    (None: any). What the routes use is kept in app.state: store, worker, host, limits, catalog, static, estimator."""
    from nst.core.devices import pick_device
    from nst.host import default_host

    host = host or default_host()
    limits = limits or Limits()
    pick_device(device)
    store = JobStore(Path(data))
    load_notes = store.load()
    worker = Worker(store, host, device, preview_seconds)

    @asynccontextmanager
    async def lifespan(_app):
        worker.start()
        yield
        await run_in_threadpool(worker.stop)

    app = FastAPI(title="nst studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.worker, app.state.load_notes = store, worker, load_notes
    app.state.host, app.state.limits, app.state.static = host, limits, static_files()
    app.state.catalog = {**describe(host, {worker.recorder.name}), "limits": limits.describe(), "device": device}
    app.state.estimator = Estimator(host, device, worker.busy)
    app.include_router(router)
    app.add_exception_handler(ApiError, lambda _request, exc: error_response(exc.status, exc.message))
    app.add_exception_handler(HTTPException, lambda _request, exc: error_response(exc.status_code, str(exc.detail)))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(Failures)
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts)
    return app


def _validation_error(_request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("path", "query"))
    return error_response(400, f"{where}: {first.get('msg', 'invalid request')}")
