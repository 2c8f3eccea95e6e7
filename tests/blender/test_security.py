# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile Manager data, the auth header, and other users' jobs, in real bpy against the fake Manager.

(The evaluator's hostile corpus is in tests/core/test_expressions.py; the self-signed HTTPS Manager
in tests/core/test_tls.py.)
"""
from __future__ import annotations

import bpy
import pytest

from recording_layout import draw_panel

MODULE = "bl_ext.user_default.flamenco_panel"
SECRET = "Bearer do-not-leak-4711"


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


def test_hostile_names_and_logs(prefs, online, fake_manager, wm_state):
    evil = "../../etc/passwd\x1b[31m\x00\r\n\u202e" + "x" * 100_000
    job = fake_manager.state.add_job(evil, metadata={"user.name": prefs.user_name}, status="active", tasks=1,
                                     activity="\x1b]0;owned\x07" * 1000)
    task_id = fake_manager.state.job_tasks(job["id"])[0]["id"]
    fake_manager.state.append_log(task_id, "\x1b[2J\x1b[31mred\x1b[0m \x07bell \x00nul\n" * 500)
    bpy.ops.flamenco_panel.refresh()
    item = wm_state.jobs[0]
    assert len(item.name) <= 200 and len(item.activity) <= 200
    draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context)   # draws without error
    wm_state.active_job_index = 0
    bpy.ops.flamenco_panel.show_task_log(task_id=task_id)
    text = next(t for t in bpy.data.texts if t.get("flamenco_task_id") == task_id)
    content = text.as_string()
    assert "\x1b" not in content and "\x00" not in content and "\x07" not in content and "red bell nul" in content
    assert "\x1b" not in text.name and "\x00" not in text.name and len(text.name.encode()) <= 63
    bpy.ops.flamenco_panel.remove_logs()


def test_auth_header_never_shown(prefs, online, fake_manager, wm_state, capsys):
    prefs.header_name, prefs.header_value = "Authorization", SECRET
    try:
        bpy.ops.flamenco_panel.ping()
        assert fake_manager.requests[-1].headers.get("Authorization") == SECRET
        fake_manager.fault("*", ".*", "status", code=500, body={"message": "boom"})
        with pytest.raises(RuntimeError) as info:
            bpy.ops.flamenco_panel.refresh()
        assert SECRET not in str(info.value) and SECRET not in wm_state.message
        out = capsys.readouterr()
        assert SECRET not in out.out and SECRET not in out.err
        assert SECRET not in repr(sub("blender.preferences").connection(prefs))
    finally:
        prefs.header_name, prefs.header_value = "", ""


@pytest.mark.parametrize("operator", ["cancel_job", "delete_job", "pause_job", "requeue_job"])
def test_other_users_jobs_are_never_acted_on(prefs, online, fake_manager, wm_state, operator):
    job = fake_manager.state.add_job("theirs", metadata={"user.name": "someone-else"}, status="paused")
    bpy.ops.flamenco_panel.refresh()
    before = len(fake_manager.requests)
    with pytest.raises(RuntimeError, match="belongs to someone-else"):
        getattr(bpy.ops.flamenco_panel, operator)(job_id=job["id"])
    # by id only (not in the local list): the helper re-checks on fresh data before sending
    wm_state.jobs.clear()
    with pytest.raises(RuntimeError, match="belongs to someone-else"):
        getattr(bpy.ops.flamenco_panel, operator)(job_id=job["id"])
    assert [r for r in fake_manager.requests[before:] if r.method != "GET"] == []
    assert job["id"] in fake_manager.state.jobs and fake_manager.state.get_job(job["id"])["status"] == "paused"


@pytest.mark.parametrize("expression", ["C.preferences.addons[0].module", "C.window_manager.clipboard",
                                        "bpy.context.preferences.system.use_online_access",
                                        "bpy.data.texts[0].as_string()"])
def test_job_type_expressions_cannot_read_private_data(prefs, online, fake_manager, tmp_path, expression):
    fake_manager.state.set_job_type({"name": "nosy", "label": "Nosy", "settings": [
        {"key": "loot", "type": "string", "eval": expression}]})
    sub("blender.settings").catalog.clear()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    try:
        with pytest.raises(RuntimeError, match='Setting "loot"'):
            bpy.ops.flamenco_panel.submit_job(job_type="nosy")
        assert fake_manager.count("POST", "/api/v3/jobs") == 0
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)


def test_one_refresh_at_a_time(prefs, online, fake_manager, runtime):
    fake_manager.fault("GET", "/api/v3/jobs", "slow", seconds=0.5)
    bpy.ops.flamenco_panel.refresh()
    bpy.ops.flamenco_panel.refresh()
    bpy.ops.flamenco_panel.refresh()
    import time
    deadline = time.monotonic() + 20
    while runtime.busy() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert fake_manager.count("GET", "/api/v3/jobs") == 1
