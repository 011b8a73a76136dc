"""The page and the HTTP API of docs/http-api.md, as routes reading what they use from app.state (store,
worker, host, limits, catalog, static, estimator; see nst.serve.app.create_app)."""
from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from nst.errors import NSTError, UsageError
from nst.serve.forms import Limits, NotAnImage, TooLarge, check_request, cli_message, display_name, over, store_image
from nst.serve.jobs import FINISHED, ID, Job, JobStore

MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".jpg": "image/jpeg"}
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
FORM_KEYS = ("content", "style", "plugins", "set", "inputs_from")
ESTIMATE_KEYS = ("width", "height", "styles")

router = APIRouter()


class ApiError(Exception):
    """An HTTP error with a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def job_or_404(request: Request, job_id: str) -> Job:
    job = request.app.state.store.get(job_id)
    if job is None:
        raise ApiError(404, f"no job '{job_id}'" if ID.fullmatch(job_id) else "not a job id (32 hex digits)")
    return job


def job_file(request: Request, job: Job, name: str, what: str, **kwargs) -> FileResponse:
    """A file of JOB's folder, or 404 when it is gone (a job folder is read back: it may have been changed)."""
    path = request.app.state.store.folder(job.id) / name
    if not path.is_file() or path.is_symlink():
        raise ApiError(404, f"job {job.id} has no {what} (its file is missing)")
    return FileResponse(path, **kwargs)


@router.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    return Response(request.app.state.static["index.html"], media_type=MEDIA[".html"],
                    headers={"Content-Security-Policy": PAGE_POLICY})


@router.get("/static/{name:path}", include_in_schema=False)
async def static_file(name: str, request: Request) -> Response:
    static = request.app.state.static
    if name not in static:
        raise ApiError(404, "not found")
    return Response(static[name], media_type=MEDIA[Path(name).suffix], headers={"Cache-Control": "no-cache"})


@router.get("/api/plugins")
async def plugins(request: Request) -> dict:
    return request.app.state.catalog


@router.post("/api/estimate")
async def estimate(request: Request) -> dict:
    """The time a job with these fields would take on the server's device (the fields of POST /api/jobs without
    files, plus the content's width and height and the number of styles)."""
    state = request.app.state
    form = await request.form(max_files=0, max_fields=200, max_part_size=1 << 16)
    try:
        fields = {k: str(v) for k, v in form.multi_items() if k not in FORM_KEYS + ESTIMATE_KEYS}
        shape = [number_field(form, key, default, hi) for key, default, hi in
                 (("width", 640, 1 << 16), ("height", 480, 1 << 16), ("styles", 1, state.limits.styles))]
        job_request = await run_in_threadpool(check_request, fields, [str(p) for p in form.getlist("plugins")],
                                              [str(s) for s in form.getlist("set")], shape[2], state.host)
    except NSTError as exc:
        raise ApiError(400, cli_message(exc)) from None
    finally:
        await form.close()
    try:
        return await run_in_threadpool(state.estimator.estimate, job_request, *shape)
    except NSTError as exc:  # found only by planning, e.g. johnson without --model
        raise ApiError(400, cli_message(exc)) from None


@router.get("/api/defaults")
async def defaults(request: Request) -> dict:
    """The form's default job for this device (measured once, on the built-in example's shape)."""
    from PIL import Image

    with Image.open(io.BytesIO(request.app.state.static["examples/content.jpg"])) as example:
        width, height = example.size
    return await run_in_threadpool(request.app.state.estimator.default_job, width, height)


def number_field(form, key: str, default: int, hi: int) -> int:
    """The whole number in form field KEY (DEFAULT when absent), between 0 and HI."""
    text = str(form.get(key) or default).strip()
    if not text.isdigit() or not 0 <= int(text) <= hi:
        raise UsageError(f"{key}: expected a whole number between 0 and {hi}, got '{text[:40]}'")
    return int(text)


@router.get("/api/jobs")
async def jobs(request: Request) -> dict:
    store = request.app.state.store
    with store.lock:
        return {"jobs": [job.public(history=False) for job in store.listing()]}


@router.post("/api/jobs", status_code=201)
async def create_job(request: Request) -> dict:
    state = request.app.state
    form = await read_form(request, state.limits, state.worker.waiting())
    try:
        return await start_job(form, state)
    finally:
        await form.close()  # the uploads' temporary files


async def start_job(form, state) -> dict:
    """Check a job's form and uploads (STATE: the app's), store its inputs and queue it."""
    store, limits = state.store, state.limits
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
                                              [str(s) for s in form.getlist("set")], styles, state.host)
    except NSTError as exc:
        raise ApiError(400, cli_message(exc)) from None
    job_id, folder = store.new_folder()
    try:
        inputs, names = await store_inputs(uploads, source, folder, store, limits)
    except BaseException:
        store.discard(job_id)
        raise
    job = Job(job_id, job_request, inputs, names)
    state.worker.submit(job)
    return {"id": job_id, "status": job.status, "url": f"/api/jobs/{job_id}"}


@router.get("/api/jobs/{job_id}")
async def job_state(job_id: str, request: Request) -> dict:
    job = job_or_404(request, job_id)
    with request.app.state.store.lock:
        return job.public()


@router.get("/api/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    job, store = job_or_404(request, job_id), request.app.state.store

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


@router.get("/api/jobs/{job_id}/preview")
async def job_preview(job_id: str, request: Request) -> Response:
    job = job_or_404(request, job_id)
    if job.preview is not None:
        return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})
    if job.status == "done":
        return job_file(request, job, "result.png", "result", media_type="image/png")
    raise ApiError(404, f"job {job.id} has no preview yet ({job.status})")


@router.get("/api/jobs/{job_id}/result")
async def job_result(job_id: str, request: Request, download: bool = False) -> Response:
    job = job_or_404(request, job_id)
    if job.status != "done":
        raise ApiError(409 if job.status in ("queued", "running") else 404,
                       f"job {job.id} has no result ({job.status}{': ' + job.error if job.error else ''})")
    headers = {"Content-Disposition": f'attachment; filename="nst-{job.id[:8]}.png"'} if download else {}
    return job_file(request, job, "result.png", "result", media_type="image/png", headers=headers)


@router.get("/api/jobs/{job_id}/inputs/{index}")
async def job_input(job_id: str, index: int, request: Request) -> Response:
    job = job_or_404(request, job_id)
    if not 0 <= index < len(job.inputs):
        raise ApiError(404, f"job {job.id} has inputs 0 to {len(job.inputs) - 1} (0 is the content)")
    return job_file(request, job, job.inputs[index], f"input {index}")


@router.delete("/api/jobs/{job_id}", status_code=202)
async def cancel_job(job_id: str, request: Request) -> dict:
    job = job_or_404(request, job_id)
    if job.status in FINISHED:
        raise ApiError(409, f"job {job.id} has already finished ({job.status})")
    request.app.state.worker.cancel(job)
    return {"id": job.id, "status": job.status, "cancel_requested": True}


def progress_event(job: Job) -> str:
    """One server-sent event's data: status, step, total, rate, time left, losses, error, preview and result URLs."""
    public = job.public(history=False)
    keys = ("id", "status", "step", "total", "rate", "left", "losses", "error", "preview", "result")
    return json.dumps({k: public[k] for k in keys})


async def read_form(request: Request, limits: Limits, waiting: int):
    """The multipart form of POST /api/jobs, refused early when it is too large or the queue is full."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "a Content-Length header is needed (send the form as multipart/form-data)")
    cap = limits.upload_bytes * (limits.styles + 1) + (1 << 20)
    if int(length) > cap:
        raise ApiError(413, f"request of {over(int(length), cap, 'request limit')}")
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
                names.append(await run_in_threadpool(store_image, data, name, folder, stem, limits, upload.size))
            except TooLarge as exc:
                raise ApiError(413, str(exc)) from None
            except NotAnImage as exc:
                raise ApiError(415, str(exc)) from None
            except NSTError as exc:
                raise ApiError(400, str(exc)) from None
            shown.append(name)
        else:
            original = store.folder(source.id) / source.inputs[index]
            names.append(stem + original.suffix)
            try:
                if original.is_symlink():  # a job folder is read back: only its own files are copied
                    raise FileNotFoundError(2, "not a file of the job")
                shutil.copyfile(original, folder / names[-1])
            except OSError as exc:
                raise ApiError(404, f"inputs_from: the inputs of job {source.id} cannot be read ({exc.strerror})") from None
            shown.append(source.input_names[index])
    return names, shown
