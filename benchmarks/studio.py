"""The studio's first click: the default job it picks for this device (GET /api/defaults), the estimate it shows
before Run (POST /api/estimate) and the time the job then takes, from submitting it to its result (the built-in
example photo and painting, the embedded VGG19).

    python benchmarks/studio.py [--device cpu] [--jobs gatys:256:200 arbitrary:512:1 ...] [--no-default] [--out FILE]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
from common import machine, write_report
from fastapi.testclient import TestClient

from nst.serve.app import create_app, static_files


def timed_job(client, fields: dict[str, str], example: dict[str, bytes]) -> tuple[dict, float, dict]:
    """(the estimate, seconds from POST to done, the finished job) of one job on the example images."""
    estimate = client.post("/api/estimate", data={**fields, "width": "256", "height": "170", "styles": "1"}).json()
    started = time.perf_counter()
    files = [("content", ("content.jpg", example["content"], "image/jpeg")),
             ("style", ("style.jpg", example["style"], "image/jpeg"))]
    job_id = client.post("/api/jobs", files=files, data=fields).json()["id"]
    while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in ("done", "error", "cancelled"):
        time.sleep(0.05)
    return estimate, time.perf_counter() - started, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", nargs="*", default=[], help="more jobs to time, as METHOD:SIZE:STEPS")
    parser.add_argument("--default", action=argparse.BooleanOptionalAction, default=True,
                        help="choose and time the default job (--no-default: only --jobs)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    static = static_files()
    example = {"content": static["examples/content.jpg"], "style": static["examples/style.jpg"]}
    rows = []
    with tempfile.TemporaryDirectory() as data, TestClient(create_app(data, args.device)) as client:
        started = time.perf_counter()
        default = client.get("/api/defaults").json() if args.default else None
        choosing = time.perf_counter() - started
        jobs = [("default", default["method"], default["size"], default["steps"])] if default else []
        jobs += [("given", *(int(v) if v.isdigit() else v for v in spec.split(":"))) for spec in args.jobs]
        for kind, method, size, steps in jobs:
            fields = {"method": str(method), "size": str(size), "steps": str(steps)}
            estimate, seconds, job = timed_job(client, fields, example)
            rows.append((kind, method, size, steps, estimate, seconds, job))
            print(f"done: {method} {size} px {steps} steps", flush=True)
    lines = [f"# The studio's first click, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- {args.device}: {machine(args.device)}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads",
             (f"- default job: {default['method']}, {default['size']} px, {default['steps']} steps: {default['why']} "
              f"(chosen in {choosing:.1f} s, on the first GET /api/defaults)" if default else "- default job: not asked"),
             "- estimate: POST /api/estimate before the job (plan + start-up); job: from POST /api/jobs to status done, "
             "the example photo (256x170) and painting", "",
             "| job | method | size px | steps | estimate s | job s | job / estimate | status |", "|---" * 8 + "|"]
    for kind, method, size, steps, estimate, seconds, job in rows:
        guess = estimate.get("seconds")
        ratio = f"{seconds / guess:.2f}" if guess else "–"
        lines.append(f"| {kind} | {method} | {size} | {steps} | {guess if guess is not None else estimate['text']} | "
                     f"{seconds:.1f} | {ratio} | {job['status']} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
