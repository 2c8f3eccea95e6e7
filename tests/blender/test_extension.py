# SPDX-License-Identifier: GPL-3.0-or-later
"""The built zip installed in real Blender: registration, preferences, panels, helper link."""
from __future__ import annotations

import getpass
import socket
import subprocess
import time

import bpy
import pytest

from recording_layout import draw_panel

MODULE = "bl_ext.user_default.flamenco_panel"


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


def test_installed_and_registered(extension):
    assert extension.__name__ == MODULE
    for op in ("ping", "refresh", "submit_job", "cancel_job", "pause_job", "requeue_job", "show_task_log",
               "set_worker_status", "delete_job", "remove_logs"):
        assert hasattr(bpy.ops.flamenco_panel, op), op
        assert getattr(bpy.ops.flamenco_panel, op).get_rna_type() is not None
    for cls in ("FLAMENCO_PT_main", "FLAMENCO_PT_jobs", "FLAMENCO_PT_workers", "FLAMENCO_UL_jobs"):
        assert hasattr(bpy.types, cls), cls
    st = bpy.context.window_manager.flamenco_panel
    for collection in ("jobs", "workers", "tasks"):
        assert len(getattr(st, collection)) == 0
    job = st.jobs.add()
    for prop in ("id", "name", "status", "progress", "is_mine"):
        assert hasattr(job, prop)
    st.jobs.clear()


def test_preferences_defaults(prefs):
    assert prefs.bl_rna.identifier == "FLAMENCO_AP_preferences"
    assert prefs.manager_url == "http://localhost:8080"
    assert prefs.user_name == getpass.getuser()
    assert prefs.verify_tls is True
    assert prefs.timeout > 0
    for name in ("user_email", "ca_bundle", "ignore_proxy", "header_name", "header_value", "refresh_interval"):
        assert hasattr(prefs, name)


def test_register_makes_no_request_and_starts_no_process(extension, monkeypatch):
    started, connected = [], []
    real_popen_init, real_connect = subprocess.Popen.__init__, socket.socket.connect
    monkeypatch.setattr(subprocess.Popen, "__init__", lambda self, *a, **kw: started.append(a) or
                        real_popen_init(self, *a, **kw))
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: connected.append(addr) or
                        real_connect(self, addr))
    bpy.context.preferences.system.use_online_access = True
    try:
        extension.unregister()
        begin = time.perf_counter()
        extension.register()
        elapsed = time.perf_counter() - begin
    finally:
        bpy.context.preferences.system.use_online_access = False
    assert started == [] and connected == []
    assert sub("blender.runtime")._channel is None
    assert elapsed < 1.0   # the benchmark script measures it properly; this only catches a gross mistake


def test_offline_sends_nothing(prefs, wm_state, fake_manager):
    assert not bpy.app.online_access
    for op in (bpy.ops.flamenco_panel.ping, bpy.ops.flamenco_panel.refresh):
        with pytest.raises(RuntimeError, match="Online access is off"):
            op()
    with pytest.raises(RuntimeError):
        bpy.ops.flamenco_panel.cancel_job(job_id="0000")
    assert fake_manager.count() == 0
    assert wm_state.connection == 'OFFLINE'
    layout = draw_panel(bpy.types.FLAMENCO_PT_main, bpy.context)
    assert layout.has_text("Online access is off")
    assert layout.has_text("Allow Online Access")
    assert draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).log == [("hidden", {})]


def test_unconfigured_panel(prefs, wm_state, online):
    old = prefs.manager_url
    prefs.manager_url = ""
    try:
        with pytest.raises(RuntimeError, match="No Manager URL"):
            bpy.ops.flamenco_panel.ping()
        layout = draw_panel(bpy.types.FLAMENCO_PT_main, bpy.context)
        assert layout.has_text("No Manager configured")
    finally:
        prefs.manager_url = old


def test_error_panel_keeps_last_data(prefs, wm_state, online, fake_manager):
    bpy.ops.flamenco_panel.refresh()
    assert wm_state.connection == 'CONNECTED'
    jobs_before = len(wm_state.jobs)
    fake_manager.fault("GET", r"/api/v3/jobs$", "status", code=500)
    with pytest.raises(RuntimeError, match="500"):
        bpy.ops.flamenco_panel.refresh()
    assert wm_state.connection == 'ERROR'
    assert len(wm_state.jobs) == jobs_before
    layout = draw_panel(bpy.types.FLAMENCO_PT_main, bpy.context)
    assert layout.has_text("500")
    assert layout.has_text("stale")


def test_connected_panel(prefs, wm_state, online, fake_manager):
    bpy.ops.flamenco_panel.ping()
    assert wm_state.connection == 'CONNECTED'
    bpy.ops.flamenco_panel.refresh()
    layout = draw_panel(bpy.types.FLAMENCO_PT_main, bpy.context)
    assert layout.has_text(wm_state.manager_name)
    assert "flamenco_panel.refresh" in layout.operators()
    assert draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).log != [("hidden", {})]


def test_helper_round_trip(prefs, wm_state, online, fake_manager, runtime):
    """The interactive path: the operator returns at once; drain() applies the helper's answer."""
    begin = time.perf_counter()
    assert bpy.ops.flamenco_panel.ping() == {'FINISHED'}
    assert time.perf_counter() - begin < 0.5
    assert wm_state.connection == 'CONNECTING'
    deadline = time.monotonic() + 30
    while wm_state.connection == 'CONNECTING' and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert wm_state.connection == 'CONNECTED', wm_state.message
    assert wm_state.manager_version
    helper = runtime.channel().process
    assert helper is not None and helper.poll() is None


def test_helper_restarts_after_dying(prefs, wm_state, online, fake_manager, runtime):
    bpy.ops.flamenco_panel.ping()
    channel = runtime.channel()
    channel.process.kill()
    channel.process.wait(5)
    deadline = time.monotonic() + 10
    while runtime.busy() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert not runtime.busy()   # the lost request ended in an error, not a hang
    starts = channel.starts
    bpy.ops.flamenco_panel.ping()
    assert channel.starts == starts + 1
    deadline = time.monotonic() + 30
    while runtime.busy() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert wm_state.connection == 'CONNECTED', wm_state.message


def test_unregister_stops_helper(extension, prefs, online, fake_manager, runtime):
    bpy.ops.flamenco_panel.ping()
    process = runtime.channel().process
    extension.unregister()
    try:
        assert process.wait(5) is not None
        assert runtime._channel is None
        assert not hasattr(bpy.types.WindowManager, "flamenco_panel")
    finally:
        extension.register()


class _PrefsView:
    """The preferences with a recording layout, to call their draw() as Blender would."""

    def __init__(self, prefs, layout):
        object.__setattr__(self, "_prefs", prefs)
        object.__setattr__(self, "layout", layout)

    def __getattr__(self, name):
        return getattr(self._prefs, name)


def test_test_connection_shows_manager_or_error(prefs, wm_state, online, fake_manager):
    from recording_layout import RecordingLayout
    bpy.ops.flamenco_panel.ping()
    layout = RecordingLayout()
    type(prefs).draw(_PrefsView(prefs, layout), bpy.context)
    assert layout.has_text(wm_state.manager_name) and layout.has_text(wm_state.manager_version)
    assert "flamenco_panel.ping" in layout.operators()
    fake_manager.fault("GET", "/api/v3/version", "status", code=502, body={"message": "bad gateway"})
    from importlib import import_module
    import_module(MODULE + ".core.client")._CAPABILITIES.clear()
    with pytest.raises(RuntimeError, match="502"):
        bpy.ops.flamenco_panel.ping()
    layout = RecordingLayout()
    type(prefs).draw(_PrefsView(prefs, layout), bpy.context)
    assert layout.has_text("502")
