"""The studio's web app: the page (static files shipped in the package, read once into memory) and the
HTTP API of docs/http-api.md. Errors are JSON `{"error": "one line"}` with a 4xx status.

Every request passes the Guard first: the Host header must be one of ALLOWED_HOSTS (when given: a
loopback server refuses other names, against DNS rebinding), and every /api call must be same-origin
and carry the token (when the server has one).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from nst.errors import NSTError
from nst.host import first_line
from nst.serve.catalog import describe
from nst.serve.forms import Limits, NotAnImage, TooLarge, check_request, cli_message, display_name, store_image
from nst.serve.jobs import FINISHED, ID, Job, JobStore, Worker

STATIC = ("index.html", "app.js", "style.css", "examples/content.jpg", "examples/style.jpg")
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".jpg": "image/jpeg"}
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
TOKEN_HEADER = "x-nst-token"
FORM_KEYS = ("content", "style", "plugins", "set", "inputs_from")


class ApiError(Exception):
    """An HTTP error with a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


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


def static_files() -> dict[str, bytes]:
    folder = files("nst.serve") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


def create_app(data: str | Path, device: str = "auto", token: str | None = None, host=None, limits: Limits | None = None,
               allowed_hosts: list[str] | None = None, preview_seconds: float = 0.25) -> FastAPI:
    """The studio app: jobs and settings kept in DATA, run on DEVICE through HOST (default: the installed
    plugins); TOKEN required on every API call when given; ALLOWED_HOSTS: Host header names accepted
    (None: any)."""
    from nst.core.devices import pick_device
    from nst.host import default_host

    host = host or default_host()
    limits = limits or Limits()
    pick_device(device)
    store = JobStore(Path(data))
    load_notes = store.load()
    worker = Worker(store, host, device, preview_seconds)
    catalog = {**describe(host, {worker.recorder.name}), "limits": limits.describe(), "device": device}
    static = static_files()

    @asynccontextmanager
    async def lifespan(_app):
        worker.start()
        yield
        await run_in_threadpool(worker.stop)

    app = FastAPI(title="nst studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.worker, app.state.load_notes = store, worker, load_notes

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(_request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request, exc: Exception):
        return error_response(500, f"unexpected failure ({first_line(exc)}); set NST_DEBUG=1 for the traceback")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("path", "query"))
        return error_response(400, f"{where}: {first.get('msg', 'invalid request')}")

    def job_or_404(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job '{job_id}'" if ID.fullmatch(job_id) else "not a job id (32 hex digits)")
        return job

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static["index.html"], media_type=MEDIA[".html"], headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/static/{name:path}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:
            raise ApiError(404, "not found")
        return Response(static[name], media_type=MEDIA[Path(name).suffix], headers={"Cache-Control": "no-cache"})

    @app.get("/api/plugins")
    async def plugins() -> dict:
        return catalog

    @app.get("/api/jobs")
    async def jobs() -> dict:
        with store.lock:
            return {"jobs": [job.public(history=False) for job in store.listing()]}

    @app.post("/api/jobs", status_code=201)
    async def create_job(request: Request) -> dict:
        form = await read_form(request, limits, worker.waiting())
        try:
            return await start_job(form)
        finally:
            await form.close()  # the uploads' temporary files

    async def start_job(form) -> dict:
        uploads = form.getlist("content"), form.getlist("style")
        if any(not isinstance(u, UploadFile) for u in uploads[0] + uploads[1]):
            raise ApiError(400, "content and style must be uploaded image files (multipart/form-data)")
        if len(uploads[0]) > 1:
            raise ApiError(400, "one content image per job")
        if len(uploads[1]) > limits.styles:
            raise ApiError(400, f"at most {limits.styles} style images per job")
        source = None
        if form.get("inputs_from"):
            source = store.get(str(form["inputs_from"]))
            if source is None:
                raise ApiError(400, f"inputs_from: no job '{str(form['inputs_from'])[:40]}'")
        if not uploads[0] and source is None:
            raise ApiError(400, "a content image is needed (form field 'content')")
        fields: dict[str, str] = {}
        for key, value in form.multi_items():
            if key in FORM_KEYS:
                continue
            if key in fields or not isinstance(value, str):
                raise ApiError(400, f"--{key[:40]}: " + ("given twice" if key in fields else "expected text, got a file"))
            fields[key] = value
        styles = len(uploads[1]) if uploads[1] or source is None else len(source.inputs) - 1
        try:
            job_request = await run_in_threadpool(check_request, fields, [str(p) for p in form.getlist("plugins")],
                                                  [str(s) for s in form.getlist("set")], styles, host)
        except NSTError as exc:
            raise ApiError(400, cli_message(exc)) from None
        job_id, folder = store.new_folder()
        try:
            inputs, names = await store_inputs(uploads, source, folder, store, limits)
        except BaseException:
            store.discard(job_id)
            raise
        job = Job(job_id, job_request, inputs, names)
        worker.submit(job)
        return {"id": job_id, "status": job.status, "url": f"/api/jobs/{job_id}"}

    @app.get("/api/jobs/{job_id}")
    async def job_state(job_id: str) -> dict:
        job = job_or_404(job_id)
        with store.lock:
            return job.public()

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        job = job_or_404(job_id)

        async def stream():
            seen, beat = -1, time.monotonic()
            while not await request.is_disconnected():
                with store.lock:
                    version, status, state = job.version, job.status, progress_event(job)
                if version != seen:
                    seen, beat = version, time.monotonic()
                    yield f"event: progress\ndata: {state}\n\n"
                if status in FINISHED:
                    yield f"event: end\ndata: {state}\n\n"
                    return
                if time.monotonic() - beat > 15:
                    beat = time.monotonic()
                    yield ": still running\n\n"
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/jobs/{job_id}/preview")
    async def job_preview(job_id: str) -> Response:
        job = job_or_404(job_id)
        if job.preview is not None:
            return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})
        if job.status == "done":
            return FileResponse(store.folder(job.id) / "result.png", media_type="image/png")
        raise ApiError(404, f"job {job.id} has no preview yet ({job.status})")

    @app.get("/api/jobs/{job_id}/result")
    async def job_result(job_id: str, download: bool = False) -> Response:
        job = job_or_404(job_id)
        if job.status != "done":
            raise ApiError(409 if job.status in ("queued", "running") else 404,
                           f"job {job.id} has no result ({job.status}{': ' + job.error if job.error else ''})")
        headers = {"Content-Disposition": f'attachment; filename="nst-{job.id[:8]}.png"'} if download else {}
        return FileResponse(store.folder(job.id) / "result.png", media_type="image/png", headers=headers)

    @app.get("/api/jobs/{job_id}/inputs/{index}")
    async def job_input(job_id: str, index: int) -> Response:
        job = job_or_404(job_id)
        if not 0 <= index < len(job.inputs):
            raise ApiError(404, f"job {job.id} has inputs 0 to {len(job.inputs) - 1} (0 is the content)")
        return FileResponse(store.folder(job.id) / job.inputs[index])

    @app.delete("/api/jobs/{job_id}", status_code=202)
    async def cancel_job(job_id: str) -> dict:
        job = job_or_404(job_id)
        if job.status in FINISHED:
            raise ApiError(409, f"job {job.id} has already finished ({job.status})")
        worker.cancel(job)
        return {"id": job.id, "status": job.status, "cancel_requested": True}

    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts)
    return app


def progress_event(job: Job) -> str:
    """One server-sent event's data: status, step, total, losses, error, preview and result URLs."""
    public = job.public(history=False)
    return json.dumps({k: public[k] for k in ("id", "status", "step", "total", "losses", "error", "preview", "result")})


async def read_form(request: Request, limits: Limits, waiting: int):
    """The multipart form of POST /api/jobs, refused early when it is too large or the queue is full."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "a Content-Length header is needed (send the form as multipart/form-data)")
    cap = limits.upload_bytes * (limits.styles + 1) + (1 << 20)
    if int(length) > cap:
        raise ApiError(413, f"request of {int(length) / 1e6:.1f} MB is over the studio's limit of {cap / 1e6:.1f} MB")
    if waiting >= limits.queue:
        raise ApiError(429, f"{waiting} jobs are waiting already; try again when some have run")
    if not request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ApiError(415, "send the job as multipart/form-data (files content and style, other fields as text)")
    return await request.form(max_files=limits.styles + 1, max_fields=200, max_part_size=1 << 16)


async def store_inputs(uploads, source: Job | None, folder: Path, store: JobStore, limits: Limits):
    """(file names, display names) of a new job's content and styles: the uploads, checked and stored,
    or the inputs of job SOURCE where no file was uploaded."""
    import shutil

    content, styles = uploads
    names, shown = [], []
    parts = [("content", content[0] if content else None, 0)] + \
            ([(f"style{i + 1}", u, None) for i, u in enumerate(styles)] if styles else
             [(f"style{i}", None, i) for i in range(1, len(source.inputs))])
    for stem, upload, index in parts:
        if upload is not None:
            data = await upload.read(limits.upload_bytes + 1)
            name = display_name(upload.filename, stem)
            try:
                names.append(await run_in_threadpool(store_image, data, name, folder, stem, limits))
            except TooLarge as exc:
                raise ApiError(413, str(exc)) from None
            except NotAnImage as exc:
                raise ApiError(415, str(exc)) from None
            except NSTError as exc:
                raise ApiError(400, str(exc)) from None
            shown.append(name)
        else:
            original = source.inputs[index]
            names.append(stem + Path(original).suffix)
            try:
                shutil.copyfile(store.folder(source.id) / original, folder / names[-1])
            except OSError as exc:
                raise ApiError(404, f"inputs_from: the inputs of job {source.id} cannot be read ({exc.strerror})") from None
            shown.append(source.input_names[index])
    return names, shown
