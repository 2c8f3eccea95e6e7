# SPDX-License-Identifier: GPL-3.0-or-later
"""The farm view in real bpy against the fake Manager: lists, actions, logs, notifications, panel states."""
from __future__ import annotations

import time

import bpy
import pytest

from recording_layout import draw_panel, shown_jobs

MODULE = "bl_ext.user_default.flamenco_panel"


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


@pytest.fixture
def farm(prefs, online, fake_manager):
    """A farm with jobs of mine and of someone else, and two workers; the view refreshed once."""
    old_user = prefs.user_name
    prefs.user_name = "ana"
    s = fake_manager.state
    jobs = {
        "mine_active": s.add_job("my active", metadata={"user.name": "ana"}, status="active", tasks=2),
        "mine_done": s.add_job("my done", metadata={"user.name": "ana"}, status="completed", tasks=1),
        "theirs": s.add_job("their job", metadata={"user.name": "bob"}, status="active", tasks=1),
    }
    workers = {"w1": s.add_worker("w1"), "w2": s.add_worker("w2", status="asleep")}
    bpy.ops.flamenco_panel.refresh()
    yield fake_manager, jobs, workers
    prefs.user_name = old_user


def select(st, job_id):
    index = next(i for i, j in enumerate(st.jobs) if j.id == job_id)
    st.active_job_index = index   # like a click: fetches tasks (synchronously in background mode)
    return st.jobs[index]


def test_lists_filled_mine_vs_all(farm, wm_state):
    fm, jobs, _ = farm
    assert wm_state.connection == 'CONNECTED'
    assert {j.name for j in wm_state.jobs} == {"my active", "my done", "their job"}
    assert {j.name: j.is_mine for j in wm_state.jobs} == {"my active": True, "my done": True, "their job": False}
    assert shown_jobs(wm_state) == ["my done", "my active"]   # mine, newest first
    wm_state.show_all_jobs = True
    try:
        assert shown_jobs(wm_state) == ["their job", "my done", "my active"]
    finally:
        wm_state.show_all_jobs = False
    assert {w.name: w.status for w in wm_state.workers} == {"w1": "awake", "w2": "asleep"}
    job = select(wm_state, jobs["mine_active"]["id"])
    assert wm_state.tasks_job_id == job.id and len(wm_state.tasks) == 2
    assert all(0.0 <= t.progress <= 1.0 for t in wm_state.tasks)


def test_cancel_own_job(farm, wm_state):
    fm, jobs, _ = farm
    job_id = jobs["mine_active"]["id"]
    assert bpy.ops.flamenco_panel.cancel_job(job_id=job_id) == {'FINISHED'}
    item = next(j for j in wm_state.jobs if j.id == job_id)
    assert item.status == "cancel-requested"                     # optimistic, at once
    assert fm.state.get_job(job_id)["status"] in {"canceled", "cancel-requested"}
    bpy.ops.flamenco_panel.refresh()
    assert next(j for j in wm_state.jobs if j.id == job_id).status == "canceled"   # confirmed


def test_cancel_someone_elses_job_is_refused_and_nothing_sent(farm, wm_state):
    fm, jobs, _ = farm
    job_id = jobs["theirs"]["id"]
    before = len(fm.requests)
    with pytest.raises(RuntimeError, match="belongs to bob"):
        bpy.ops.flamenco_panel.cancel_job(job_id=job_id)
    assert [r for r in fm.requests[before:] if r.method != "GET"] == []
    assert fm.state.get_job(job_id)["status"] == "active"


def test_actions_follow_status_rules(farm, wm_state):
    fm, jobs, _ = farm
    select(wm_state, jobs["mine_done"]["id"])
    ops = draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).operators()
    assert "flamenco_panel.requeue_job" in ops and "flamenco_panel.delete_job" in ops
    assert "flamenco_panel.cancel_job" not in ops and "flamenco_panel.pause_job" not in ops
    with pytest.raises(RuntimeError, match="Cannot cancel"):
        bpy.ops.flamenco_panel.cancel_job(job_id=jobs["mine_done"]["id"])
    select(wm_state, jobs["theirs"]["id"])
    ops = draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).operators()
    assert not {"flamenco_panel.cancel_job", "flamenco_panel.requeue_job", "flamenco_panel.delete_job"} & set(ops)


def test_pause_and_resume(farm, wm_state):
    fm, jobs, _ = farm
    job_id = jobs["mine_active"]["id"]
    bpy.ops.flamenco_panel.pause_job(job_id=job_id)
    assert fm.state.get_job(job_id)["status"] in {"pause-requested", "paused"}
    fm.state.set_job_status(job_id, "paused")
    bpy.ops.flamenco_panel.refresh()
    bpy.ops.flamenco_panel.requeue_job(job_id=job_id)
    assert fm.state.get_job(job_id)["status"] in {"requeueing", "queued"}


def test_priority(farm, wm_state):
    fm, jobs, _ = farm
    bpy.ops.flamenco_panel.set_job_priority(job_id=jobs["mine_active"]["id"], priority=90)
    assert fm.state.get_job(jobs["mine_active"]["id"])["priority"] == 90
    with pytest.raises(RuntimeError, match="not yours"):
        bpy.ops.flamenco_panel.set_job_priority(job_id=jobs["theirs"]["id"], priority=90)


def test_worker_sleep_and_wake(farm, wm_state):
    fm, _, workers = farm
    w1 = workers["w1"]["id"]
    bpy.ops.flamenco_panel.set_worker_status(worker_id=w1, status="asleep", lazy=False)
    assert fm.requests[-1].json == {"status": "asleep", "is_lazy": False}
    bpy.ops.flamenco_panel.refresh()
    assert next(w for w in wm_state.workers if w.id == w1).status == "asleep"
    bpy.ops.flamenco_panel.set_worker_status(worker_id=w1, status="awake")
    bpy.ops.flamenco_panel.refresh()
    assert next(w for w in wm_state.workers if w.id == w1).status == "awake"
    with pytest.raises(RuntimeError):
        bpy.ops.flamenco_panel.set_worker_status(worker_id=w1, status="dance")


def test_log_tail_into_text_and_follow(farm, wm_state):
    fm, jobs, _ = farm
    job = select(wm_state, jobs["mine_active"]["id"])
    task_id = wm_state.tasks[0].id
    fm.state.set_task_status(task_id, "active")
    fm.state.append_log(task_id, "\x1b[32mstarting\x1b[0m render\n" + "".join(f"line {i}\n" for i in range(300)))
    bpy.ops.flamenco_panel.show_task_log(task_id=task_id)
    logview = sub("blender.logview")
    text = next(t for t in bpy.data.texts if t.get(logview.TASK_KEY) == task_id)
    tail = fm.state.task_log(task_id)[-2048:].decode()
    assert text.as_string().rstrip("\n").endswith("line 299")
    assert tail.split("\n", 1)[1].rstrip("\n") in text.as_string()
    assert job.name in text.name and len(text.name.encode()) <= 63
    # follow: the whole log (cleaned), then only what is new
    bpy.ops.flamenco_panel.show_task_log(task_id=task_id, follow=True)
    assert task_id in logview.following
    assert text.as_string().startswith("starting render\n")
    fm.state.append_log(task_id, "line 300\n")
    logview.following[task_id]["next"] = 0
    before = len(fm.requests)
    logview.poll()
    ranged = [r for r in fm.requests[before:] if r.path.startswith("/job-files/")]
    assert ranged and ranged[-1].headers.get("Range", "").startswith("bytes=")
    assert text.as_string().rstrip("\n").endswith("line 300")
    assert text.as_string().count("line 299") == 1
    fm.state.set_task_status(task_id, "completed")
    logview.following[task_id]["next"] = 0
    logview.poll()
    assert task_id not in logview.following     # finished tasks are no longer followed
    bpy.ops.flamenco_panel.remove_logs()
    assert not any(logview.TASK_KEY in t for t in bpy.data.texts)


def test_notification_fires_once(farm, wm_state):
    fm, jobs, _ = farm
    job_id = jobs["mine_active"]["id"]
    fm.state.set_job_status(job_id, "completed")
    bpy.ops.flamenco_panel.refresh()
    assert "my active" in wm_state.notice and "completed" in wm_state.notice
    wm_state.notice = ""
    bpy.ops.flamenco_panel.refresh()
    assert wm_state.notice == ""


def test_last_rendered_preview(farm, wm_state):
    fm, jobs, _ = farm
    fm.state.set_last_rendered(jobs["mine_active"]["id"])
    select(wm_state, jobs["mine_active"]["id"])
    preview = sub("blender.preview")
    assert preview.image_size(jobs["mine_active"]["id"]) == (16, 9)   # the fake's tiny JPEG, loaded
    assert preview.image_size(jobs["theirs"]["id"]) == (0, 0)


def test_panel_states(prefs, wm_state, online, fake_manager):
    main, jobs_panel = bpy.types.FLAMENCO_PT_main, bpy.types.FLAMENCO_PT_jobs
    # connecting
    wm_state.connection = 'CONNECTING'
    assert draw_panel(main, bpy.context).has_text("Connecting")
    # empty farm
    bpy.ops.flamenco_panel.refresh()
    assert draw_panel(jobs_panel, bpy.context).has_text("No jobs")
    assert draw_panel(bpy.types.FLAMENCO_PT_workers, bpy.context).has_text("No workers")
    # populated
    fake_manager.state.add_job("a job", metadata={"user.name": prefs.user_name})
    bpy.ops.flamenco_panel.refresh()
    populated = draw_panel(jobs_panel, bpy.context)
    assert any(kind == "template_list" for kind, _ in populated.log)
    # unreachable: last data kept, marked stale
    fake_manager.fault("*", ".*", "close")
    with pytest.raises(RuntimeError, match="Manager"):
        bpy.ops.flamenco_panel.refresh()
    assert len(wm_state.jobs) == 1
    stale = draw_panel(main, bpy.context)
    assert stale.has_text("stale") and wm_state.connection == 'ERROR'
    # submit panel is drawn too, in every state
    draw_panel(bpy.types.FLAMENCO_PT_submit, bpy.context)


@pytest.mark.parametrize("fault", [dict(kind="stall"), dict(kind="status", code=500), dict(kind="invalid_json")])
def test_faults_keep_last_data_and_never_block(prefs, wm_state, online, fake_manager, runtime, fault):
    prefs.timeout = 1.0
    try:
        fake_manager.state.add_job("kept", metadata={"user.name": prefs.user_name})
        bpy.ops.flamenco_panel.refresh()
        deadline = time.monotonic() + 20
        while runtime.busy() and time.monotonic() < deadline:
            runtime.drain(); time.sleep(0.02)
        assert [j.name for j in wm_state.jobs] == ["kept"]
        fake_manager.fault("GET", "/api/v3/jobs", **fault)
        begin = time.perf_counter()
        bpy.ops.flamenco_panel.refresh()
        assert time.perf_counter() - begin < 0.05      # the operator returns at once
        worst = 0.0
        while runtime.busy() and time.monotonic() < deadline:
            t0 = time.perf_counter(); runtime.drain(); worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.02)
        assert worst < 0.05                             # no drain step blocks the main thread
        assert wm_state.connection == 'ERROR' and wm_state.message
        assert [j.name for j in wm_state.jobs] == ["kept"]
    finally:
        prefs.timeout = 10.0


def test_progress_from_tasks_before_38(prefs, online):
    from conftest import current_prefs
    from fakemanager import FakeManager
    with FakeManager("3.7") as old:
        job = old.state.add_job("old", metadata={"user.name": prefs.user_name}, status="active", tasks=4)
        tasks = old.state.job_tasks(job["id"])
        old.state.set_task_status(tasks[0]["id"], "completed")
        url = current_prefs().manager_url
        current_prefs().manager_url = old.url
        try:
            bpy.ops.flamenco_panel.refresh()
            st = bpy.context.window_manager.flamenco_panel
            assert not st.jobs[0].has_progress       # 3.7 reports no steps
            item = select(st, job["id"])
            assert item.has_progress and item.progress == pytest.approx(0.25)
        finally:
            current_prefs().manager_url = url


def test_refresh_deltas_keep_the_list_equal_to_the_farm(prefs, online, fake_manager, runtime, wm_state, monkeypatch):
    """Through the helper: the first refresh fills the list, later ones send only the changed and new rows,
    written in place at scattered indices; the list always equals the farm, oldest first."""
    from farmsteps import settle
    state = sub("blender.state")
    s = fake_manager.state
    ids = s.add_jobs(300, metadata={"user.name": prefs.user_name})
    deltas = []
    real_apply = state._apply_changed_rows
    monkeypatch.setattr(state, "_apply_changed_rows",
                        lambda st, changes, *a: deltas.append(sorted(i for i, _ in changes)) or real_apply(st, changes, *a))

    def farm_rows():
        jobs = sorted(s.jobs.values(), key=lambda j: (j["created"], j["id"]))
        return [(j["id"], j["name"], j["status"]) for j in jobs]

    def refresh():
        bpy.ops.flamenco_panel.refresh()
        settle(runtime)
        assert wm_state.connection == 'CONNECTED', wm_state.message
        assert [(j.id, j.name, j.status) for j in wm_state.jobs] == farm_rows()

    refresh()
    assert deltas == []                                          # the first refresh sends every row
    for index in (0, 7, 150, 298, 299):
        s.set_job_status(ids[index], "active")
    new = [s.add_job(f"new {i}", metadata={"user.name": prefs.user_name})["id"] for i in range(3)]
    refresh()
    assert deltas == [[0, 7, 150, 298, 299, 300, 301, 302]]      # only those rows, in place and appended
    s.set_job_status(ids[150], "completed")
    s.set_job_status(new[2], "canceled")
    refresh()
    assert deltas[-1] == [150, 302]
    assert "job-00150" in wm_state.notice or "new 2" in wm_state.notice     # mine, finished: told
    every_tenth = list(range(0, 300, 10))                        # many rows: written in one walk of the list
    for index in every_tenth:
        s.set_job_status(ids[index], "queued" if index == 150 else "paused")
    refresh()
    assert deltas[-1] == every_tenth
    refresh()
    assert len(deltas) == 3                                      # unchanged: no rows at all


def test_a_delta_that_does_not_add_up_is_refused_then_all_rows_come(prefs, online, fake_manager, runtime, wm_state):
    from farmsteps import settle
    state = sub("blender.state")
    s = fake_manager.state
    s.add_jobs(5, metadata={"user.name": prefs.user_name})
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    rows = [list(r) for r in state._rows]
    before = [(j.id, j.status) for j in wm_state.jobs]
    for changes, count in (([[2, rows[2]], [2, rows[2]]], 5),      # the same index twice
                           ([[7, rows[1]]], 5),                     # past the end
                           ([[5, rows[0]]], 7)):                    # an appended row missing
        assert state._apply_changed_rows(wm_state, changes, count, prefs.user_name) is None
        assert [(j.id, j.status) for j in wm_state.jobs] == before  # nothing written
    data = {"job_rows_changed": [[2, rows[2]], [2, rows[2]]], "job_rows_count": 5, "job_rows_digest": "d"}
    state.apply_refresh(wm_state, data, prefs.user_name)
    assert state.rows_digest(wm_state) == ""                     # so the next refresh sends every row
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    assert [(j.id, j.status) for j in wm_state.jobs] == before and state.rows_digest(wm_state)


def test_selecting_a_job_deleted_on_the_farm_is_not_an_error(farm, wm_state):
    fm, jobs, _ = farm
    job_id = jobs["mine_done"]["id"]
    fm.state.remove_job(job_id)
    select(wm_state, job_id)
    assert wm_state.connection == 'CONNECTED', wm_state.message
    assert wm_state.tasks_job_id == job_id and len(wm_state.tasks) == 0
