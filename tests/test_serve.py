"""nst serve: the studio's HTTP API through FastAPI's test client (tiny random VGG weights, 64 px jobs)."""
from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed")
from conftest import ctrl_c_reaches_it, gradient_image, stripes_image  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import nst  # noqa: E402
from nst.core.weights import WeightSource  # noqa: E402
from nst.host import PluginHost  # noqa: E402
from nst.serve.app import create_app  # noqa: E402
from nst.serve.forms import Limits  # noqa: E402
from nst.serve.jobs import INTERRUPTED  # noqa: E402

TOKEN = "s3cret-token-for-tests-0123"


class TinyWeights:
    """Registers the tiny random VGG19 file as the weight source 'tiny' (requests name sources, never paths)."""

    name = "tinyweights"

    def __init__(self, path: Path) -> None:
        self.path = path

    @nst.hookimpl
    def nst_register_weights(self, register):
        register(WeightSource(name="tiny", kind="local", description="tiny random VGG19 for tests",
                              filename=str(self.path), info={"convention": "caffe"}))


class Glow:
    """A third-party-like plugin with one option of each kind, brightening the result."""

    name = "glow"

    @nst.hookimpl
    def nst_plugin_options(self, register):
        register("gain", float, 1.0, "brightness factor", min=0.5, max=2.0)
        register("enabled", bool, True, "apply the gain")
        register("mode", str, "mul", "how to apply it", choices=("mul", "add"))
        register("bands", list[int], [1, 2], "bands to touch")
        register("mask", Path, None, "a mask file")

    @nst.hookimpl
    def nst_postprocess(self, image, options):
        return (image * options["gain"]).clamp(0, 1) if options["enabled"] else image


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def host(tiny_weights):
    h = PluginHost(load_entry_points=False)
    h.register(TinyWeights(tiny_weights))
    h.register(Glow())
    return h


@pytest.fixture
def studio(tmp_path, host):
    """studio(**kwargs) -> a TestClient (as a context manager) on an app over tmp_path/'data'."""
    def make(**kwargs):
        kwargs.setdefault("preview_seconds", 0.0)
        return TestClient(create_app(tmp_path / "data", "cpu", host=host, **kwargs))
    return make


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


CONTENT, STYLE = png(gradient_image(64, 48)), png(stripes_image(64, 64))


def submit(client, steps=20, content=CONTENT, style=STYLE, headers=None, **fields):
    files = [("content", ("photo.png", content, "image/png"))] if content is not None else []
    files += [("style", ("painting.png", style, "image/png"))] if style is not None else []
    data = {"size": "64", "steps": str(steps), "weights": "tiny", **fields}
    return client.post("/api/jobs", files=files, data=data, headers=headers or {})


def wait(client, job_id, until=("done", "error", "cancelled"), timeout=60.0, headers=None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/api/jobs/{job_id}", headers=headers or {}).json()
        if state["status"] in until or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def wait_running(client, job_id, timeout=60.0, headers=None) -> dict:
    """The job's state once it has made its first step."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/api/jobs/{job_id}", headers=headers or {}).json()
        if state["step"] > 0 or state["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def one_line(response) -> str:
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_job_runs_to_the_result_nst_run_gives(studio, tiny_weights, tmp_path):
    with studio() as client:
        created = submit(client, steps=20, **{"style-weight": "0.01"})
        assert created.status_code == 201
        job_id = created.json()["id"]
        assert re.fullmatch(r"[0-9a-f]{32}", job_id)
        state = wait(client, job_id)
        assert state["status"] == "done", state
        assert state["step"] == state["total"] == 20 and state["error"] is None
        assert set(state["losses"]) == {"content", "style", "tv", "total"}
        assert [h[0] for h in state["history"]] == list(range(1, 21))
        result = client.get(f"/api/jobs/{job_id}/result")
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
        download = client.get(f"/api/jobs/{job_id}/result?download=1")
        assert "attachment" in download.headers["content-disposition"]
    got = np.asarray(Image.open(io.BytesIO(result.content)).convert("RGB"), dtype=np.int16)
    (tmp_path / "c.png").write_bytes(CONTENT)
    (tmp_path / "s.png").write_bytes(STYLE)
    expected = nst.stylize(tmp_path / "c.png", [tmp_path / "s.png"], size=64, steps=20, style_weight=0.01,
                           weights=str(tiny_weights), device="cpu")
    assert got.shape == (48, 64, 3)
    assert np.abs(got - np.asarray(expected, dtype=np.int16)).max() <= 1  # the same run as the Python API's


class Pacer:
    """Holds a job at its second step until the test has received a progress event with a preview, so a preview of
    a step before the last is always seen, however slowly the event stream is served (no timing assumption)."""

    name = "pacer"

    def __init__(self) -> None:
        self.seen = threading.Event()

    @nst.hookimpl
    def nst_on_step(self, step):
        if step == 2:
            self.seen.wait(timeout=120)


def test_progress_events_carry_steps_losses_and_changing_previews(studio, host):
    pacer = Pacer()
    host.register(pacer)
    try:
        with studio() as client:
            job_id = submit(client, steps=30, plugins="pacer").json()["id"]
            events = []
            with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = None
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        kind = line[len("event: "):]
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line[len("data: "):])))
                        if kind == "progress" and events[-1][1]["preview"]:
                            pacer.seen.set()
            assert events[-1][0] == "end" and events[-1][1]["status"] == "done"
            steps = [e["step"] for k, e in events if k == "progress"]
            assert steps == sorted(steps) and steps[-1] == 30
            previews = {e["preview"] for _, e in events if e["preview"]}
            assert len(previews) >= 2  # the preview changed while the job ran
            assert all(e["losses"]["total"] > 0 for _, e in events if e["step"])
            paced = [e for k, e in events if k == "progress" and e["step"] >= 2]  # the numbers nst run prints, too
            assert paced and all(e["rate"] > 0 and e["left"] >= 0 for e in paced)
            assert paced[-1]["step"] < 30 or paced[-1]["left"] == 0
            preview = client.get(next(iter(previews)))
            assert preview.status_code == 200
            assert Image.open(io.BytesIO(preview.content)).size == (64, 48)
    finally:
        host.unregister(pacer.name)


def test_cancel_running_and_queued_jobs(studio):
    with studio() as client:
        running = submit(client, steps=1_000_000).json()["id"]
        queued = submit(client, steps=10).json()["id"]
        state = wait_running(client, running)
        assert state["status"] == "running" and state["step"] > 0
        assert client.get(f"/api/jobs/{queued}").json()["status"] == "queued"
        gone = client.delete(f"/api/jobs/{queued}")
        assert gone.status_code == 202 and gone.json()["status"] == "cancelled"
        assert client.delete(f"/api/jobs/{running}").status_code == 202
        state = wait(client, running)
        assert state["status"] == "cancelled" and state["error"] is None  # reported as cancelled, not as an error
        assert 0 < state["step"] < 1_000_000
        assert client.get(f"/api/jobs/{running}/result").status_code == 404
        assert client.get(f"/api/jobs/{queued}").json()["step"] == 0  # it never ran
        assert one_line(client.delete(f"/api/jobs/{running}")) == f"job {running} has already finished (cancelled)"
        after = submit(client, steps=5).json()["id"]  # the worker goes on with the next job
        assert wait(client, after)["status"] == "done"


def test_bad_uploads_and_values_get_the_clis_one_line(studio, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("not a picture")
    Path("style.png").write_bytes(STYLE)
    Path("content.png").write_bytes(CONTENT)

    def cli_error(*args) -> str:
        code, _, err = run_cli("run", *args, "-o", "out.png", "--weights", "tiny.safetensors")
        assert code != 0
        return err.strip().removeprefix("error: ")

    with studio(limits=Limits(upload_bytes=20_000, pixels=100_000)) as client:
        files = [("content", ("notes.txt", b"not a picture", "text/plain")), ("style", ("style.png", STYLE, "image/png"))]
        response = client.post("/api/jobs", files=files, data={"size": "64", "weights": "tiny"})
        assert response.status_code == 415
        assert one_line(response) == cli_error("notes.txt", "style.png")
        response = submit(client, size="5")
        assert response.status_code == 400 and one_line(response) == cli_error("content.png", "style.png", "--size", "5")
        response = submit(client, plugins="semantic", set="semantic.regions=abc")
        assert one_line(response) == cli_error("content.png", "style.png", "--plugin", "semantic", "--set", "semantic.regions=abc")
        assert one_line(submit(client, set="glow.gain=9", plugins="glow")) == "glow.gain: must be between 0.5 and 2, got 9"
        assert one_line(submit(client, method="nope")).startswith("--method: unknown method 'nope'")
        big = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)))
        response = submit(client, content=big)
        assert response.status_code == 413 and "upload limit" in one_line(response)
        wide = png(Image.new("RGB", (1000, 200)))
        response = submit(client, content=wide)
        assert response.status_code == 413 and "1000x200" in one_line(response)
        response = submit(client, content=CONTENT[:200])  # a truncated PNG: decoding fails
        assert response.status_code in (400, 415) and one_line(response).startswith("photo.png: ")
        assert submit(client, content=None).status_code == 400
        assert client.post("/api/jobs", json={"size": 64}).status_code == 415
        # requests name weight sources and never files: paths are refused before anything is read
        assert "weight source name" in one_line(submit(client, weights="/etc/passwd"))
        response = submit(client, plugins="glow", set="glow.mask=/etc/passwd")
        assert one_line(response) == "glow.mask: names a file on the server; set it with nst run, not the studio"
        assert one_line(submit(client, device="cuda")).startswith("--device: ")
        twice = client.post("/api/jobs", files=[("content", ("c.png", CONTENT, "image/png"))],
                            data={"size": ["64", "96"]})
        assert one_line(twice) == "--size: given twice"
        as_file = client.post("/api/jobs", files=[("content", ("c.png", CONTENT, "image/png")), ("steps", ("s", b"5"))])
        assert one_line(as_file) == "--steps: expected text, got a file"
        assert client.get("/api/jobs").json()["jobs"] == []
    assert list((tmp_path / "data" / "jobs").iterdir()) == []  # refused uploads leave nothing behind


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_any_over_limit_image_gets_413_with_the_real_figures(studio):
    header = b"\x89PNG\r\n\x1a\n"
    bomb = header + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        png_chunk(b"IDAT", zlib.compress(b"\0" * 4)) + png_chunk(b"IEND", b"")  # 10 Gpx claimed in 60 bytes
    text_bomb = CONTENT[:33] + png_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"a" * (20 << 20))) + CONTENT[33:]
    limit = len(text_bomb)
    with studio(limits=Limits(upload_bytes=limit, pixels=1_000)) as client:
        for content, fragment in ((bomb, "photo.png: image of 10000.000 Mpx is over the studio's limit of 0.001 Mpx"),
                                  (text_bomb, "photo.png: Decompressed data too large"),
                                  (text_bomb + b"\0", f"{(limit + 1) / 1e6:.6f} MB is over the studio's upload limit "
                                                      f"of {limit / 1e6:.6f} MB")):
            response = submit(client, content=content)
            assert response.status_code == 413 and fragment in one_line(response), one_line(response)
        assert submit(client, content=png(gradient_image(40, 30))).status_code == 413  # 1200 px over 1000
        assert client.get("/api/jobs").json()["jobs"] == []


def test_a_bad_job_folder_is_skipped_and_never_breaks_the_gallery(studio, tmp_path):
    jobs = tmp_path / "data" / "jobs"
    with studio() as client:
        done = submit(client, steps=3).json()["id"]
        assert wait(client, done)["status"] == "done"
    record = json.loads((jobs / done / "job.json").read_text())
    before = {p.name: p.read_bytes() for p in (jobs / done).iterdir()}

    def job(name: str, text: str, inputs: bool = True) -> str:
        folder = jobs / (name * 32)
        folder.mkdir()
        for file in record["inputs"] if inputs else []:
            (folder / file).write_bytes((jobs / done / file).read_bytes())
        (folder / "job.json").write_text(text)
        return folder.name

    skipped = [job("1", json.dumps({**record, "created": "yesterday"})),
               job("2", json.dumps({**record, "history": "all of it"})),
               job("3", json.dumps({**record, "status": "hacked"})),
               job("4", '{"request": ' * 50_000 + "}" * 50_000),
               job("5", json.dumps({**record, "request": {**record["request"], "fields": {"size": 64}}})),
               job("6", json.dumps({**record, "inputs": ["../../../../etc/passwd"]})),
               job("7", json.dumps([record]))]
    impostor = job("8", json.dumps({**record, "status": "running"}))  # names the finished job's id: it is job 888…
    no_result = job("9", json.dumps(record))  # done, but its result.png is gone
    (jobs / ("a" * 32)).mkdir()
    (jobs / ("a" * 32) / "job.json").symlink_to(jobs / done / "job.json")
    app = create_app(tmp_path / "data", "cpu", host=PluginHost(load_entry_points=False))
    assert len(app.state.load_notes) == len(skipped) + 1 and all("skipped" in n for n in app.state.load_notes)
    with TestClient(app) as client:
        listing = client.get("/api/jobs")
        assert listing.status_code == 200
        states = {j["id"]: j for j in listing.json()["jobs"]}
        assert set(states) == {done, impostor, no_result}
        assert states[done]["status"] == "done" and client.get(f"/api/jobs/{done}/result").status_code == 200
        assert states[impostor]["status"] == "error" and states[impostor]["error"] == INTERRUPTED
        response = client.get(f"/api/jobs/{no_result}/result")
        assert response.status_code == 404 and one_line(response) == f"job {no_result} has no result (its file is missing)"
        assert client.get(f"/api/jobs/{no_result}/preview").status_code == 404
    assert {p.name: p.read_bytes() for p in (jobs / done).iterdir()} == before  # the finished job is as it was


def test_a_500_is_one_line_on_the_console(studio, monkeypatch, capfd):
    from nst.serve.jobs import JobStore

    def broken(self):
        raise RuntimeError("a bug\nwith a second line")

    with studio() as client:
        monkeypatch.setattr(JobStore, "listing", broken)
        monkeypatch.delenv("NST_DEBUG", raising=False)
        response = client.get("/api/jobs")
        assert response.status_code == 500
        assert one_line(response) == "unexpected failure (RuntimeError: a bug); set NST_DEBUG=1 for the traceback"
        assert client.get("/api/plugins").status_code == 200  # the server goes on
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["nst studio: GET /api/jobs: unexpected failure (RuntimeError: a bug); set NST_DEBUG=1 for the "
                     "traceback"], err


def test_token_host_and_origin_checks(studio):
    with studio(token=TOKEN, allowed_hosts=["testserver", "127.0.0.1"]) as client:
        assert client.get("/api/plugins").status_code == 401
        assert one_line(client.get("/api/plugins", headers={"X-NST-Token": "wrong"})) == "wrong token"
        assert client.get("/api/plugins", headers={"X-NST-Token": TOKEN}).status_code == 200
        assert client.get("/api/plugins", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get(f"/api/jobs?token={TOKEN}").status_code == 200
        assert submit(client).status_code == 401
        job_id = submit(client, headers={"X-NST-Token": TOKEN}).json()["id"]
        for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/events", f"/api/jobs/{job_id}/preview",
                     f"/api/jobs/{job_id}/result", f"/api/jobs/{job_id}/inputs/0"):
            assert client.get(path).status_code == 401, path
        assert client.delete(f"/api/jobs/{job_id}").status_code == 401
        assert wait(client, job_id, headers={"X-NST-Token": TOKEN})["status"] == "done"
        page = client.get("/")
        assert page.status_code == 200 and "nst studio" in page.text  # the page itself holds no data
        evil = client.get("/api/plugins", headers={"X-NST-Token": TOKEN, "Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 403


def test_results_and_settings_survive_a_restart(studio):
    with studio() as client:
        done = submit(client, steps=5, plugins="glow", set="glow.gain=1.5").json()["id"]
        assert wait(client, done)["status"] == "done"
        result = client.get(f"/api/jobs/{done}/result").content
        running = submit(client, steps=1_000_000).json()["id"]
        assert wait_running(client, running)["status"] == "running"
    with studio() as client:  # a new app on the same folder
        jobs = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
        assert set(jobs) == {done, running}
        assert jobs[done]["status"] == "done"
        assert jobs[done]["request"] == {"fields": {"size": "64", "steps": "5", "weights": "tiny"},
                                         "plugins": ["glow"], "sets": ["glow.gain=1.5"]}
        assert jobs[done]["input_names"] == ["photo.png", "painting.png"]
        assert client.get(f"/api/jobs/{done}/result").content == result
        assert jobs[running]["status"] == "error" and jobs[running]["error"] == INTERRUPTED
        again = client.post("/api/jobs", data={"inputs_from": done, "size": "64", "steps": "5", "weights": "tiny"})
        assert again.status_code == 201  # a re-run takes the earlier job's inputs
        state = wait(client, again.json()["id"])
        assert state["status"] == "done" and state["input_names"] == ["photo.png", "painting.png"]
        assert client.get(f"/api/jobs/{again.json()['id']}/inputs/0").content == CONTENT


def test_nnst_is_a_method_with_its_options_and_runs_a_job(studio):
    with studio() as client:
        catalog = client.get("/api/plugins").json()
        method = next(m for m in catalog["methods"] if m["name"] == "nnst")
        assert method["plugin"] == "nnst" and method["needs_style"] is True and "neighbour" in method["help"]
        options = {o["key"]: o for o in next(p for p in catalog["plugins"] if p["name"] == "nnst")["options"]}
        assert (options["alpha"]["kind"], options["alpha"]["default"]) == ("float", 0.75)
        assert options["colors"]["choices"] == ["content", "result", "none"]
        job = submit(client, steps=2, method="nnst", set="nnst.coarsest=32").json()["id"]
        state = wait(client, job)
        assert state["status"] == "done", state
        assert one_line(submit(client, method="nnst", set="nnst.alpha=3")) == "nnst.alpha: must be between 0 and 1, got 3"


def test_plugins_lists_methods_options_and_settings(studio):
    with studio() as client:
        catalog = client.get("/api/plugins").json()
    glow = next(p for p in catalog["plugins"] if p["name"] == "glow")
    assert glow["selectable"] is True
    options = {o["key"]: o for o in glow["options"]}
    assert options["gain"] == {"key": "gain", "type": "float", "kind": "float", "default": 1.0, "help": "brightness factor",
                               "choices": None, "min": 0.5, "max": 2.0, "optional": False, "settable": True}
    assert (options["enabled"]["kind"], options["mode"]["kind"], options["mode"]["choices"]) == ("bool", "choice", ["mul", "add"])
    assert (options["bands"]["kind"], options["bands"]["default"]) == ("list", [1, 2])
    assert (options["mask"]["kind"], options["mask"]["settable"], options["mask"]["optional"]) == ("path", False, True)
    assert {"name": "gatys", "plugin": "gatys"}.items() <= next(m for m in catalog["methods"] if m["name"] == "gatys").items()
    gatys = next(p for p in catalog["plugins"] if p["name"] == "gatys")
    assert gatys["selectable"] is False  # a method's plugin takes part through the method select
    settings = {s["name"]: s for s in catalog["settings"]}
    assert settings["size"]["default"] == 512 and settings["preserve-colors"]["kind"] == "choice"
    assert "device" not in settings and "save-every" not in settings
    assert "studio-progress" not in {p["name"] for p in catalog["plugins"]}
    assert {"name": "tiny", "encoder": True}.items() <= next(w for w in catalog["weights"] if w["name"] == "tiny").items()


def test_paths_from_requests_never_reach_the_disk(studio):
    with studio() as client:
        for path in ("/api/jobs/..%2f..%2fetc", "/api/jobs/../../etc/passwd", "/static/../app.py", "/static/%2e%2e/app.py",
                     "/api/jobs/" + "0" * 32 + "/inputs/0"):
            assert client.get(path).status_code == 404, path
        assert one_line(client.get("/api/jobs/nope")) == "not a job id (32 hex digits)"
        assert client.get("/static/examples/content.jpg").headers["content-type"] == "image/jpeg"


def test_serve_command_checks_its_flags(run_cli, tmp_path, monkeypatch):
    import sys

    from conftest import one_error_line

    code, _, err = run_cli("serve", "--host", "0.0.0.0", "--token", "short")
    assert code == 2 and "--token must be at least 16" in one_error_line(err)
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli("serve", "--data", tmp_path / "file", "--port", "0")
    assert code == 1 and "cannot be the studio's data folder" in one_error_line(err)
    code, _, err = run_cli("serve", "--port", "70000")
    assert code == 2 and "--port" in one_error_line(err)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run_cli("serve", "--port", port, "--data", tmp_path / "data")
    assert code == 1 and one_error_line(err) == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; try another --port"
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the web extra not installed
    code, _, err = run_cli("serve", "--port", "0", "--data", tmp_path / "data")
    assert code == 1 and one_error_line(err) == ("error: nst serve needs the web extra (uvicorn is missing): "
                                                 "pip install 'nst-suite[web]'")


@pytest.mark.slow
def test_serve_command_serves_the_page_and_the_token_guarded_api(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    command = [sys.executable, "-m", "nst.cli", "serve", "--port", "0", "--data", str(tmp_path / "data"), "--token", TOKEN]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NST_DISABLE_PLUGINS": "depth,semantic,analogy,text,stroke"},
                              preexec_fn=ctrl_c_reaches_it)
    try:
        line = server.stdout.readline()
        match = re.search(r"(http://127.0.0.1:\d+/)\?token=(\S+)", line)
        assert match and match[2] == TOKEN, line + server.stderr.read() if server.poll() is not None else line
        base = match[1]
        page = urllib.request.urlopen(base, timeout=10).read().decode()
        assert "<title>nst studio</title>" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/plugins", timeout=10)
        assert refused.value.code == 401
        catalog = json.loads(urllib.request.urlopen(f"{base}api/plugins?token={TOKEN}", timeout=10).read())
        assert "gatys" in {m["name"] for m in catalog["methods"]}
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: the normal way to stop a server
        assert server.wait(timeout=20) == 0
        assert server.stdout.read().strip().endswith("nst studio stopped")


def test_a_full_queue_is_refused(studio):
    with studio(limits=Limits(queue=1)) as client:
        running = submit(client, steps=1_000_000).json()["id"]
        assert wait_running(client, running)["status"] == "running"
        queued = submit(client, steps=5).json()["id"]
        refused = submit(client, steps=5)
        assert refused.status_code == 429 and "waiting already" in one_line(refused)
        for job_id in (queued, running):
            client.delete(f"/api/jobs/{job_id}")
        assert wait(client, running)["status"] == "cancelled"


@pytest.mark.parametrize("address, token_printed", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_needs_a_token_beyond_loopback(run_cli, tmp_path, monkeypatch, address, token_printed):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.update(app=self.config.app, sockets=sockets))
    code, out, _ = run_cli("serve", "--host", address, "--port", "0", "--data", tmp_path / "data")
    served["sockets"][0].close()
    assert code == 0 and "nst studio stopped" in out
    token = re.search(r"\?token=(\S+)", out)
    assert bool(token) == token_printed
    client = TestClient(served["app"])
    if token_printed:
        assert len(token[1]) >= 32
        assert client.get("/api/plugins").status_code == 401
        assert client.get("/api/plugins", headers={"X-NST-Token": token[1]}).status_code == 200
    else:  # loopback: no token, but only loopback Host names (no DNS rebinding)
        assert client.get("/api/plugins", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/api/plugins", headers={"Host": "attacker.example:8000"}).status_code == 403


def test_unreadable_or_tampered_job_folders_are_skipped(studio, tmp_path):
    jobs = tmp_path / "data" / "jobs"
    for name, text in (("a" * 32, "{not json"),
                       ("b" * 32, json.dumps({"id": "b" * 32, "request": {"fields": {}, "plugins": [], "sets": []},
                                              "inputs": ["../../../etc/passwd"], "input_names": ["x"]}))):
        (jobs / name).mkdir(parents=True)
        (jobs / name / "job.json").write_text(text)
    (jobs / "not-a-job").mkdir()
    app = create_app(tmp_path / "data", "cpu", host=PluginHost(load_entry_points=False))
    assert len(app.state.load_notes) == 2 and all("skipped" in n for n in app.state.load_notes)
    with TestClient(app) as client:
        assert client.get("/api/jobs").json()["jobs"] == []
        assert client.get(f"/api/jobs/{'b' * 32}/inputs/0").status_code == 404


def test_estimate_before_run(studio):
    """POST /api/estimate: the plan of the job the form describes, timed on the server's device, plus its start-up;
    the CLI's one-line message for a bad field; methods that do not plan say so; none while a job runs."""
    fields = {"size": "64", "steps": "20", "weights": "tiny", "width": "64", "height": "48", "styles": "1"}
    with studio() as client:
        answer = client.post("/api/estimate", data=fields)
        assert answer.status_code == 200, answer.text
        first = answer.json()
        assert first["seconds"] > 0 and first["text"].startswith("about ") and first["text"].endswith(" on cpu")
        assert "64x48, 20 steps of L-BFGS (50 pairs): untiled" in first["plan"] and first["seconds"] >= first["work"] > 0
        assert client.post("/api/estimate", data=fields).json() == first  # kept: the form may ask again and again
        with_plugin = client.post("/api/estimate", data={**fields, "plugins": "glow"}).json()
        assert with_plugin["text"].endswith("(plugins glow not counted)")
        assert one_line(client.post("/api/estimate", data={**fields, "size": "abc"})) == "--size: expected an integer (int), got 'abc'"
        assert one_line(client.post("/api/estimate", data={**fields, "width": "-3"})).startswith("width: expected a whole number")
        assert one_line(client.post("/api/estimate", data={**fields, "method": "johnson"})).startswith(
            "--method johnson needs --model")  # found by planning: the same line as a job's
        analogy = client.post("/api/estimate", data={**fields, "method": "analogy"}).json()
        assert analogy["seconds"] is None and analogy["text"] == "no estimate for method analogy (it does not plan its work)"
        job_id = submit(client, steps=1_000_000).json()["id"]
        wait_running(client, job_id)
        busy = client.post("/api/estimate", data={**fields, "steps": "21"}).json()
        assert busy["seconds"] is None and busy["text"] == "estimated when the running job is done"
        client.delete(f"/api/jobs/{job_id}")
        wait(client, job_id)


def test_default_job_is_the_largest_that_fits_the_minute(host):
    """The studio's default job: gatys at the largest candidate whose estimate on the device is under the target,
    from one measured plan scaled by steps and pixels."""
    import threading

    from nst.serve.estimate import Estimator

    estimator = Estimator(host, "cpu", threading.Lock())
    asked = []

    def measured(request, width, height, styles):
        asked.append((request.fields, width, height))
        return {"seconds": 302.0, "text": "about 5 min on cpu", "plan": "", "work": 300.0, "start": 2.0, "device": "cpu"}

    estimator.estimate = measured
    job = estimator.default_job(640, 427)
    # 512 px / 300 steps: 302 s; 384/300: 171 s; 256/200: 52 s; 192/150: 300 * 0.5 * 0.1406 + 2 = 23 s
    assert (job["method"], job["size"], job["steps"]) == ("gatys", 192, 150)
    assert job["why"] == "gatys at the largest size whose job takes under 45 s on cpu: about 23 s"
    assert asked == [({"method": "gatys", "size": "512", "steps": "300"}, 640, 427)]
    assert estimator.default_job(640, 427) is job  # measured once
    estimator.defaults = None
    estimator.estimate = lambda *args: {"seconds": 3002.0, "work": 3000.0, "start": 2.0, "device": "cpu"}
    slow = estimator.default_job(640, 427)  # a device too slow for any candidate: one forward pass instead
    assert (slow["method"], slow["size"]) == ("arbitrary", 512)
    assert slow["why"] == "method arbitrary, one forward pass: gatys would take about 64 s on cpu even at 128 px and 100 steps"


def test_defaults_endpoint_measures_the_device(studio):
    with studio() as client:
        job = client.get("/api/defaults").json()
    if job["method"] == "gatys":
        assert (job["size"], job["steps"]) in [(512, 300), (384, 300), (256, 200), (192, 150), (128, 100)]
        assert re.fullmatch(r"gatys at the largest size whose job takes under 45 s on cpu: about \d+ s", job["why"])
    else:  # a machine too busy for gatys even at 128 px
        assert job["method"] == "arbitrary" and job["why"].startswith("method arbitrary, one forward pass: gatys would take")
