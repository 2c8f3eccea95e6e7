# SPDX-License-Identifier: GPL-3.0-or-later
"""Steps shared by the real-farm tests: the extension's operators in background mode (synchronous, in
this process) against a real Manager and Worker, and the check of what was sent against the served spec."""
from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import bpy
import pytest

MODULE = "bl_ext.user_default.flamenco_panel"
USER = "realfarm-tester"
JOB_TIMEOUT = 180.0     # an idle Worker asks for work every 20 s


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


def state():
    return bpy.context.window_manager.flamenco_panel


def find(collection, item_id):
    return next((item for item in collection if item.id == item_id), None)


def select(job_id: str):
    st = state()
    st.active_job_index = next(i for i, j in enumerate(st.jobs) if j.id == job_id)   # fetches its tasks


def wait_for(farm, what: str, check, timeout: float = JOB_TIMEOUT, interval: float = 1.0):
    """Refreshes through the operator until `check()` is truthy; fails with both logs on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        bpy.ops.flamenco_panel.refresh()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            st = state()
            jobs = [(j.name, j.status) for j in st.jobs]
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}; jobs {jobs}, "
                        f"message {st.message!r}\n{farm.logs()}")
        time.sleep(interval)


def settle(runtime, timeout: float = 30.0) -> None:
    """Drains the helper's answers, as the timer would, until nothing is in flight."""
    deadline = time.monotonic() + timeout
    while runtime.busy() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert not runtime.busy(), f"the helper still had work after {timeout:g} s"


def job_status(job_id: str) -> str:
    job = find(state().jobs, job_id)
    return job.status if job else ""


def submit(job_type: str, name: str, settings: dict) -> str:
    assert bpy.ops.flamenco_panel.submit_job(job_type=job_type, job_name=name,
                                             settings=json.dumps(settings)) == {'FINISHED'}
    job_id = state().last_submitted_id
    assert job_id
    return job_id


def echo_job(name: str, seconds: int = 1, repeats: int = 1) -> str:
    return submit("echo-sleep-test", name, {"message": f"hello from {name}", "sleep_duration_seconds": seconds,
                                            "sleep_repeats": repeats})


def task_log_text(task_id: str, follow: bool = False):
    assert bpy.ops.flamenco_panel.show_task_log(task_id=task_id, follow=follow) == {'FINISHED'}
    key = sub("blender.logview").TASK_KEY
    return next(t for t in bpy.data.texts if t.get(key) == task_id)


def save_shot(path) -> None:
    """The default cube, two small PNG frames, saved at `path`."""
    bpy.ops.wm.read_homefile()
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.image_settings.file_format = 'PNG'
    scene.render.resolution_x, scene.render.resolution_y = 320, 180
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def frames_of(farm, job_id: str, frames=(1, 2)) -> list:
    """The PNG frames where the job's render_output_path (as the Manager stored it) says; asserts they are PNGs."""
    import pathlib
    output = farm.job(job_id)["settings"]["render_output_path"]
    assert "{timestamp}" not in output and "######" in output
    found = []
    for frame in frames:
        png = pathlib.Path(output.replace("######", f"{frame:06d}") + ".png")
        assert png.is_file(), f"{png} missing; {sorted(p.name for p in png.parent.glob('*'))}\n{farm.logs()}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        found.append(png)
    return found


def posts_since(sent, start: int) -> list:
    """What changed something (every method but GET) among the requests recorded since `start`."""
    return [(m, u) for m, u, _b in sent[start:] if m != "GET"]


# --- what was sent, against the spec the Manager serves ---------------------------------------------

class Recorder:
    """(method, url, json body) of every `requests` call made in this process while installed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self._original = None

    def install(self) -> "Recorder":
        requests = sub("core.client").requests
        self._original = original = requests.Session.request
        calls = self.calls

        def recording(session, method, url, *args, **kwargs):
            calls.append((str(method).upper(), url, kwargs.get("json")))
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = recording
        return self

    def remove(self) -> None:
        sub("core.client").requests.Session.request = self._original


def _route(spec: dict, method: str, path: str):
    candidates = []
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            candidates.append((template.count("{"), item[method.lower()]))
    if not candidates:
        raise LookupError(f"{method} {path}")
    return min(candidates, key=lambda c: c[0])[1]


def spec_problems(farm, calls) -> tuple[list[str], set[str]]:
    """Every request to `farm` checked against the spec it serves: (problems, last path parts of POSTs)."""
    from openapi_schema_validator import OAS30Validator
    spec = farm.spec()
    api = [(m, urlsplit(u), body) for m, u, body in calls
           if urlsplit(u).port == farm.port and urlsplit(u).path.startswith("/api/v3/")]
    assert api, "no requests to this farm were recorded"
    assert all(u.hostname == "127.0.0.1" for _m, u, _b in api)
    problems, posts = [], set()
    for method, url, body in api:
        if method == "POST":
            posts.add(url.path.rsplit("/", 1)[-1])
        if url.path == "/api/v3/openapi3.json":
            continue
        try:
            op = _route(spec, method, url.path)
        except LookupError:
            problems.append(f"{method} {url.path}: not in the served spec")
            continue
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            if body is not None:
                problems.append(f"{method} {url.path} ({op.get('operationId')}): body sent, none expected")
            continue
        if body is None:
            if op["requestBody"].get("required"):
                problems.append(f"{method} {url.path} ({op.get('operationId')}): required body missing")
            continue
        validator = OAS30Validator({"allOf": [schema], "components": spec["components"]})
        for error in validator.iter_errors(body):
            problems.append(f"{method} {url.path} ({op.get('operationId')}): {error.message}")
    return problems, posts
