# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end against a real Flamenco Manager and Worker (3.9-beta1), driven through the extension's operators.

The operators run in background mode (synchronously, in this process), so every request the extension
sends passes `requests.Session.request` here: the last test checks each body against the spec the running
Manager serves. Skips, saying why, when the binaries are not installed (see tests/realfarm.py).
"""
from __future__ import annotations

import json
import pathlib
import re
import time
from urllib.parse import urlsplit

import bpy
import pytest

import realfarm

MODULE = "bl_ext.user_default.flamenco_panel"
USER = "realfarm-tester"
JOB_TIMEOUT = 180.0     # an idle Worker asks for work every 20 s

_REASON = realfarm.missing_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    with realfarm.RealFarm(tmp_path_factory.mktemp("realfarm")) as f:
        yield f


@pytest.fixture(scope="module")
def sent(extension):
    """(method, url, json body) of every request made with `requests` in this process while the tests run."""
    requests = sub("core.client").requests
    original = requests.Session.request
    log: list[tuple[str, str, object]] = []

    def recording(self, method, url, *args, **kwargs):
        log.append((str(method).upper(), url, kwargs.get("json")))
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = recording
    yield log
    requests.Session.request = original


@pytest.fixture
def real(farm, sent, prefs, online, wm_state):
    """The extension pointed at the real Manager (preferences restored afterwards)."""
    assert not sub("blender.runtime").interactive()   # synchronous, in this process
    old = prefs.manager_url, prefs.user_name
    prefs.manager_url, prefs.user_name = farm.url, USER
    try:
        yield farm
    finally:
        prefs.manager_url, prefs.user_name = old


@pytest.fixture
def shot(tmp_path):
    """A saved scene (the default cube), outside shared storage: submission packs it with BAT."""
    bpy.ops.wm.read_homefile()
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.image_settings.file_format = 'PNG'
    scene.render.resolution_x, scene.render.resolution_y = 320, 180
    path = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    yield path
    bpy.ops.wm.read_homefile(use_empty=True)


# --- helpers -------------------------------------------------------------------------------------

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


def task_log_text(task_id: str):
    assert bpy.ops.flamenco_panel.show_task_log(task_id=task_id) == {'FINISHED'}
    key = sub("blender.logview").TASK_KEY
    return next(t for t in bpy.data.texts if t.get(key) == task_id)


# --- tests ---------------------------------------------------------------------------------------

def test_ping_and_farm_view(real):
    st = state()
    assert bpy.ops.flamenco_panel.ping() == {'FINISHED'}
    assert st.connection == 'CONNECTED', st.message
    assert st.manager_name == realfarm.MANAGER_NAME
    assert st.manager_version.startswith("3.9")
    assert st.can_pause
    bpy.ops.flamenco_panel.refresh()
    worker = next(w for w in st.workers if w.name == realfarm.WORKER_NAME)
    assert worker.status == "awake" and worker.version.startswith("3.9")


def test_echo_sleep_job_completes_and_log_tail(real, shot):
    st = state()
    job_id = echo_job("rf echo")
    bpy.ops.flamenco_panel.refresh()
    job = find(st.jobs, job_id)
    assert job is not None and job.is_mine and job.type == "echo-sleep-test" and job.user_name == USER
    stored = real.job(job_id)
    assert stored["settings"] == {"message": "hello from rf echo", "sleep_duration_seconds": 1, "sleep_repeats": 1}
    assert stored["metadata"]["user.name"] == USER
    wait_for(real, "the echo job to complete", lambda: job_status(job_id) == "completed")
    select(job_id)
    assert st.tasks_job_id == job_id
    assert len(st.tasks) >= 2 and all(t.status == "completed" for t in st.tasks)
    assert find(st.jobs, job_id).progress == pytest.approx(1.0)
    echo = next(t for t in st.tasks if "echo" in t.name)
    text = task_log_text(echo.id)
    assert "hello from rf echo" in text.as_string()
    assert "rf echo" in text.name
    bpy.ops.flamenco_panel.remove_logs()


def test_render_job_writes_frames_and_last_rendered(real, shot):
    st = state()
    root = real.shared / "renders"
    job_id = submit("simple-blender-render", "rf render",
                    {"frames": "1-2", "chunk_size": 1, "render_output_root": str(root)})
    bpy.ops.flamenco_panel.refresh()
    assert find(st.jobs, job_id).is_mine
    stored = real.job(job_id)
    settings = stored["settings"]
    assert settings["frames"] == "1-2" and settings["chunk_size"] == 1
    blendfile = pathlib.Path(settings["blendfile"])
    assert real.shared in blendfile.parents and blendfile.is_file()          # packed into shared storage
    wait_for(real, "the render job to complete", lambda: job_status(job_id) in {"completed", "failed"})
    assert job_status(job_id) == "completed", real.logs()
    # the frames are where the job's render_output_path (as the Manager stored it) says
    output = real.job(job_id)["settings"]["render_output_path"]
    assert "{timestamp}" not in output and output.startswith(str(root)) and "######" in output
    for frame in (1, 2):
        png = pathlib.Path(output.replace("######", f"{frame:06d}") + ".png")
        assert png.is_file(), f"{png} missing; {sorted(p.name for p in png.parent.glob('*'))}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # tasks and a render task's log
    select(job_id)
    names = {t.name: t.status for t in st.tasks}
    assert names.get("render-1") == "completed" and names.get("render-2") == "completed", names
    render1 = next(t for t in st.tasks if t.name == "render-1")
    text = task_log_text(render1.id)
    assert "Saved: '" in text.as_string() and "000001.png" in text.as_string()
    bpy.ops.flamenco_panel.remove_logs()
    # the last-rendered image, fetched and loaded as the panel's preview (the Manager makes thumbnails
    # in the background: ask again until it has them)
    preview = sub("blender.preview")
    deadline = time.monotonic() + 60
    while preview.image_size(job_id) == (0, 0):
        assert time.monotonic() < deadline, f"no last-rendered image\n{real.logs()}"
        select(job_id)
        preview.request(job_id)
        time.sleep(1)
    width, height = preview.image_size(job_id)
    assert width > 0 and height > 0


def test_cancel_running_job(real, shot):
    job_id = echo_job("rf cancel", seconds=120)
    wait_for(real, "the long job to run", lambda: job_status(job_id) == "active")
    assert bpy.ops.flamenco_panel.cancel_job(job_id=job_id) == {'FINISHED'}
    assert job_status(job_id) in {"cancel-requested", "canceled"}            # at once
    wait_for(real, "the job to be canceled", lambda: job_status(job_id) == "canceled", timeout=60)
    # the Worker gives up its task: nothing of the job stays active
    wait_for(real, "the job's tasks to stop",
             lambda: all(t["status"] != "active"
                         for t in real.api("GET", f"/api/v3/jobs/{job_id}/tasks")["tasks"]), timeout=60)


def test_pause_and_resume(real, shot):
    job_id = echo_job("rf pause", seconds=2, repeats=3)
    assert bpy.ops.flamenco_panel.refresh() == {'FINISHED'}
    assert bpy.ops.flamenco_panel.pause_job(job_id=job_id) == {'FINISHED'}
    assert job_status(job_id) in {"pause-requested", "paused"}
    wait_for(real, "the job to be paused", lambda: job_status(job_id) == "paused", timeout=90)
    assert bpy.ops.flamenco_panel.requeue_job(job_id=job_id) == {'FINISHED'}     # resume
    wait_for(real, "the job to resume", lambda: job_status(job_id) in {"queued", "active", "completed"}, timeout=60)
    wait_for(real, "the resumed job to complete", lambda: job_status(job_id) == "completed")


def test_worker_sleep_and_wake(real):
    st = state()
    bpy.ops.flamenco_panel.refresh()
    worker_id = next(w.id for w in st.workers if w.name == realfarm.WORKER_NAME)
    assert bpy.ops.flamenco_panel.set_worker_status(worker_id=worker_id, status="asleep", lazy=False) == {'FINISHED'}
    wait_for(real, "the Worker to fall asleep", lambda: find(st.workers, worker_id).status == "asleep", timeout=60)
    assert bpy.ops.flamenco_panel.set_worker_status(worker_id=worker_id, status="awake", lazy=False) == {'FINISHED'}
    wait_for(real, "the Worker to wake up", lambda: find(st.workers, worker_id).status == "awake", timeout=60)


def test_refresh_through_the_helper_process(real, runtime):
    """The interactive path (the helper process) against the real Manager."""
    st = state()
    assert runtime.interactive()
    bpy.ops.flamenco_panel.refresh()
    deadline = time.monotonic() + 30
    while runtime.busy() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert not runtime.busy()
    assert st.connection == 'CONNECTED', st.message
    assert any(w.name == realfarm.WORKER_NAME for w in st.workers)
    assert {j.id for j in st.jobs} == {j["id"] for j in real.api("GET", "/api/v3/jobs")["jobs"]}


# --- contract: last, so it sees what all the tests above sent ------------------------------------

def _route(spec: dict, method: str, path: str):
    candidates = []
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            candidates.append((template.count("{"), item[method.lower()]))
    if not candidates:
        raise LookupError(f"{method} {path}")
    return min(candidates, key=lambda c: c[0])[1]


def test_every_request_body_matches_the_served_spec(real, sent):
    from openapi_schema_validator import OAS30Validator
    spec = real.spec()
    api = [(m, urlsplit(u), body) for m, u, body in sent if urlsplit(u).path.startswith("/api/v3/")]
    assert api, "no requests were recorded"
    assert all(u.hostname == "127.0.0.1" for _m, u, _b in api)
    problems, seen = [], set()
    for method, url, body in api:
        seen.add((method, url.path.rsplit("/", 1)[-1] if method == "POST" else ""))
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
    assert problems == []
    # the calls these tests exist for were really made
    posts = {p for _m, p in seen if p}
    assert {"jobs", "check", "setstatus"} <= posts, posts
