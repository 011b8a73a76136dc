"""The studio's time estimates, measured on the server's device before a job runs: the method's own plan (what
`nst run --plan` prints, from a probe timed now) plus the start-up a job pays (loading the networks, preparing the
inputs), and the default job: gatys at the largest of a few sizes whose estimate fits the studio's minute."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import torch

from nst.serve.forms import JobRequest

TARGET_SECONDS = 45.0  # the default job's estimate: room in a minute for a machine that turns busy, and the page
CANDIDATES = [(512, 300), (384, 300), (256, 200), (192, 150), (128, 100)]  # (size, steps), best first
CACHED = 64  # estimates kept, by request and content shape


def duration(seconds: float) -> str:
    """'about 40 s', 'about 4 min', 'about 1.5 h'."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    return f"about {seconds / 60:.0f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


class Estimator:
    """Estimates for HOST's methods on DEVICE. BUSY is the worker's lock while a job runs: a probe waits for none and
    never runs beside a job (it would slow the job, and be slowed by it)."""

    def __init__(self, host, device: str, busy: threading.Lock) -> None:
        self.host, self.device, self.busy = host, device, busy
        self.cache: dict[str, dict[str, Any]] = {}
        self.measuring = threading.Lock()
        self.defaults: dict[str, Any] | None = None

    def estimate(self, request: JobRequest, width: int, height: int, styles: int) -> dict[str, Any]:
        """{"seconds": total or None, "text": one line, "plan": the plan's text or None} for REQUEST on a WIDTHxHEIGHT
        content with STYLES style images. Plugins other than the method's are not counted (the text says so)."""
        key = json.dumps([request.fields, request.plugins, request.sets, width, height, styles], sort_keys=True)
        with self.measuring:  # one probe at a time; a request repeated meanwhile finds its answer kept
            if key in self.cache:
                return self.cache[key]
            if not self.busy.acquire(blocking=False):
                return {"seconds": None, "text": "estimated when the running job is done", "plan": None}
            try:
                answer = self._measure(request, width, height, styles)
            finally:
                self.busy.release()
            if len(self.cache) >= CACHED:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = answer
            return answer

    def _measure(self, request: JobRequest, width: int, height: int, styles: int) -> dict[str, Any]:
        from nst.api import run
        from nst.runtime.large import PLANNED

        arguments = request.run_arguments()
        method = self.host.method(str(arguments.get("method") or "gatys"))
        if method.name not in PLANNED:
            return {"seconds": None, "text": f"no estimate for method {method.name} (it does not plan its work)",
                    "plan": None}
        own = arguments["options"].get(method.plugin)
        arguments.update(plugins=[], options={method.plugin: own} if own else {}, plan=True)
        scale = min(1.0, 2048 / max(width, height, 1))  # stand-ins of the content's shape and the styles' count
        content = torch.rand(1, 3, max(8, round(height * scale)), max(8, round(width * scale)))  # (resized to --size)
        started = time.perf_counter()
        result = run(content, [torch.rand(1, 3, 256, 256) for _ in range(max(styles, 1))], host=self.host,
                     device=self.device, progress=False, note=lambda _message: None, **arguments)
        start_up = time.perf_counter() - started  # loading networks and preparing inputs, as a job does (probe included)
        seconds = result.plan.seconds + start_up
        text = f"{duration(seconds)} on {result.plan.device}"
        if request.plugins:
            text += f" (plugins {', '.join(request.plugins)} not counted)"
        return {"seconds": round(seconds, 1), "text": text, "plan": result.plan.describe(),
                "work": result.plan.seconds, "start": start_up, "device": result.plan.device}

    def default_job(self, width: int, height: int) -> dict[str, Any]:
        """The studio's default job: gatys at the first of CANDIDATES (size, steps) whose estimate on this device is
        at most TARGET_SECONDS; where none is, method arbitrary (one forward pass) when installed, else the smallest.
        Kept once measured. One plan is measured, at the first candidate; the others scale its work by steps and
        pixels (the planner's cost model) and add its start-up."""
        if self.defaults is not None:
            return self.defaults
        (size0, steps0), request = CANDIDATES[0], JobRequest({"method": "gatys"})
        request.fields.update(size=str(size0), steps=str(steps0))
        measured = self.estimate(request, width, height, 1)
        if measured["seconds"] is None:  # a job is running: not measured now
            return {"method": "gatys", "size": 256, "steps": 200,
                    "why": "the quick start's settings, until the device can be measured (a job is running)"}
        for size, steps in CANDIDATES:
            seconds = measured["work"] * steps / steps0 * (size / size0) ** 2 + measured["start"]
            if seconds <= TARGET_SECONDS:
                why = (f"gatys at the largest size whose job takes under {TARGET_SECONDS:.0f} s on {measured['device']}: "
                       f"{duration(seconds)}")
                self.defaults = {"method": "gatys", "size": size, "steps": steps, "why": why}
                return self.defaults
        slow = f"gatys would take {duration(seconds)} on {measured['device']} even at {size} px and {steps} steps"
        if any(rec.status == "ok" and "arbitrary" in rec.methods for rec in self.host.records.values()):
            self.defaults = {"method": "arbitrary", "size": 512, "steps": steps,
                             "why": f"method arbitrary, one forward pass: {slow}"}
        else:
            self.defaults = {"method": "gatys", "size": size, "steps": steps, "why": f"the smallest size: {slow}"}
        return self.defaults
