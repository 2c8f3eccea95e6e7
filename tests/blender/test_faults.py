# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault suite: one case per fault, driven through the interactive (helper-process) path.

Each case asserts: no step on Blender's main thread takes longer than 50 ms, the user gets a clear
message, the last good data is kept, and nothing is submitted twice.
"""
from __future__ import annotations

import time

import bpy
import pytest

MODULE = "bl_ext.user_default.flamenco_panel"
MAIN_THREAD_LIMIT = 0.05


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


def settle(runtime, deadline_s=30.0) -> float:
    """Drains until nothing is pending, like the timer would; returns the longest drain step."""
    worst, deadline = 0.0, time.monotonic() + deadline_s
    while runtime.busy() and time.monotonic() < deadline:
        begin = time.perf_counter()
        runtime.drain()
        worst = max(worst, time.perf_counter() - begin)
        time.sleep(0.02)
    assert not runtime.busy(), "a request never finished"
    return worst


def timed_op(op, **kw) -> float:
    begin = time.perf_counter()
    op(**kw)
    return time.perf_counter() - begin


@pytest.fixture
def farm(prefs, online, fake_manager, runtime, wm_state):
    prefs.timeout = 1.0
    fake_manager.state.add_job("kept job", metadata={"user.name": prefs.user_name})
    fake_manager.state.add_worker("kept worker")
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    assert [j.name for j in wm_state.jobs] == ["kept job"] and wm_state.connection == 'CONNECTED'
    yield fake_manager
    prefs.timeout = 10.0


FAULTS = {
    "stalled": dict(kind="stall"),
    "slow beyond the timeout": dict(kind="slow", seconds=3),
    "500": dict(kind="status", code=500, body={"code": 500, "message": "database is on fire"}),
    "503 with Retry-After": dict(kind="retry_after", seconds=0.2),
    "invalid JSON": dict(kind="invalid_json"),
    "wrong content type": dict(kind="wrong_content_type"),
    "connection reset mid-body": dict(kind="reset"),
    "50 MB response": dict(kind="huge", size=50 * 1024 * 1024),
    "connection closed": dict(kind="close"),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_refresh_fault(farm, runtime, wm_state, name):
    farm.fault("GET", "/api/v3/jobs", **FAULTS[name])
    assert timed_op(bpy.ops.flamenco_panel.refresh) < MAIN_THREAD_LIMIT
    assert settle(runtime) < MAIN_THREAD_LIMIT
    assert wm_state.connection == 'ERROR'
    assert wm_state.message and "Traceback" not in wm_state.message and len(wm_state.message) < 500
    assert [j.name for j in wm_state.jobs] == ["kept job"] and [w.name for w in wm_state.workers] == ["kept worker"]
    farm.clear_faults()
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    assert wm_state.connection == 'CONNECTED'   # recovers on the next refresh


def test_manager_restarted_during_refresh(farm, runtime, wm_state):
    farm.fault("GET", "/api/v3/worker-mgt/workers", "close")   # goes away mid-refresh…
    bpy.ops.flamenco_panel.refresh()
    assert settle(runtime) < MAIN_THREAD_LIMIT
    assert wm_state.connection == 'ERROR' and [j.name for j in wm_state.jobs] == ["kept job"]
    farm.clear_faults()                                           # …and is back
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    assert wm_state.connection == 'CONNECTED'


def test_helper_killed_mid_refresh(farm, runtime, wm_state):
    farm.fault("GET", "/api/v3/jobs", "stall")
    bpy.ops.flamenco_panel.refresh()
    farm.wait_for("GET", "/api/v3/jobs", 1, timeout=10)
    runtime.channel().process.kill()
    assert settle(runtime) < MAIN_THREAD_LIMIT
    assert wm_state.connection == 'ERROR' and "helper process" in wm_state.message
    assert [j.name for j in wm_state.jobs] == ["kept job"]
    farm.clear_faults()
    bpy.ops.flamenco_panel.refresh()                              # a new helper starts
    settle(runtime)
    assert wm_state.connection == 'CONNECTED'


def test_manager_35(prefs, online, runtime, wm_state):
    from conftest import current_prefs
    from fakemanager import FakeManager
    with FakeManager("3.5") as old:
        old.state.add_job("old job", metadata={"user.name": prefs.user_name}, status="active")
        url = current_prefs().manager_url
        current_prefs().manager_url = old.url
        try:
            bpy.ops.flamenco_panel.refresh()
            assert settle(runtime) < MAIN_THREAD_LIMIT
            assert [j.name for j in wm_state.jobs] == ["old job"] and not wm_state.can_pause
            runtime.force_interactive = False
            with pytest.raises(RuntimeError, match="cannot pause"):
                bpy.ops.flamenco_panel.pause_job(job_id=wm_state.jobs[0].id)
            assert old.count("POST", f"/api/v3/jobs/{wm_state.jobs[0].id}/setstatus") == 0
        finally:
            current_prefs().manager_url = url


# --- submission faults: never submitted twice ---------------------------------------------------

@pytest.fixture
def saved_scene(tmp_path, fake_manager):
    shared = tmp_path / "shared"
    shared.mkdir()
    fake_manager.state.shared_storage = str(shared)
    path = tmp_path / "proj" / "shot.blend"
    path.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    yield path
    bpy.ops.wm.read_homefile(use_empty=True)


def submits(fm):
    return [r for r in fm.requests if r.method == "POST" and r.path == "/api/v3/jobs"]


def load_types(runtime):
    runtime.force_interactive = False
    bpy.ops.flamenco_panel.load_job_types()
    runtime.force_interactive = True


@pytest.mark.parametrize("fault", [dict(kind="reset"), dict(kind="stall"), dict(kind="status", code=500)])
def test_submit_fault_is_reported_and_never_retried(farm, runtime, wm_state, saved_scene, fault):
    load_types(runtime)
    farm.fault("POST", "/api/v3/jobs", **fault)
    assert timed_op(bpy.ops.flamenco_panel.submit_job, job_type="echo-sleep-test",
                    settings='{"message": "m"}') < 1.0   # the scene is saved on the main thread; no network
    assert settle(runtime) < MAIN_THREAD_LIMIT
    assert len(submits(farm)) == 1 and wm_state.message
    assert not sub("blender.submit").in_flight()


def test_helper_killed_mid_upload(prefs, online, runtime, wm_state, saved_scene):
    from conftest import current_prefs
    from fakemanager import FakeManager
    with FakeManager(shaman=True) as fm:
        url = current_prefs().manager_url
        current_prefs().manager_url = fm.url
        try:
            sub("blender.settings").catalog.clear()
            load_types(runtime)
            fm.fault("POST", r"/api/v3/shaman/files/.*", "stall")
            bpy.ops.flamenco_panel.submit_job(job_type="simple-blender-render",
                                              settings='{"render_output_root": "/tmp/out"}')
            if not fm.wait_for("POST", r"/api/v3/shaman/files/.*", 1, timeout=20):
                settle(runtime)
                pytest.fail(f"no upload began; the panel says {wm_state.message!r}")
            runtime.channel().process.kill()
            assert settle(runtime) < MAIN_THREAD_LIMIT
            assert submits(fm) == [] and "helper process" in wm_state.message
            assert sorted(p.name for p in saved_scene.parent.iterdir()) == ["shot.blend"]   # no copy left
            assert not sub("blender.submit").in_flight()     # the user can submit again
            fm.clear_faults()
            bpy.ops.flamenco_panel.submit_job(job_type="simple-blender-render",
                                              settings='{"render_output_root": "/tmp/out"}')
            settle(runtime)
            assert len(submits(fm)) == 1
        finally:
            current_prefs().manager_url = url


def test_timer_tick_survives_everything(prefs, online, runtime, monkeypatch, wm_state):
    """The persistent timer must never raise: Blender would drop it and no answer would arrive again."""
    def broken():
        raise RuntimeError("a bug somewhere")
    monkeypatch.setattr(runtime, "drain", broken)
    assert runtime.tick() in (runtime.TICK_IDLE, runtime.TICK_BUSY)
