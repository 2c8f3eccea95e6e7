# SPDX-License-Identifier: GPL-3.0-or-later
"""The farm view end to end against a real Flamenco Manager and Worker (3.9), through the extension's operators.

The operators run in background mode (synchronously, in this process), so every request the extension
sends passes `requests.Session.request` here: the last test checks each body against the spec the running
Manager serves. Skips, saying why, when the binaries are not installed (see tests/realfarm.py).
"""
from __future__ import annotations

import pathlib
import time

import bpy
import pytest

import realfarm
from farmsteps import (USER, echo_job, find, frames_of, job_status, posts_since, select, settle,
                       spec_problems, state, sub, submit, task_log_text, wait_for)
from recording_layout import draw_panel, shown_jobs

_REASON = realfarm.missing_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture
def real(real_farm, pointed_at):
    return pointed_at(real_farm)


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


def test_echo_job_completes_with_log_tail_and_one_notification(real, shot):
    st = state()
    job_id = echo_job("rf echo")
    bpy.ops.flamenco_panel.refresh()
    job = find(st.jobs, job_id)
    assert job is not None and job.is_mine and job.type == "echo-sleep-test" and job.user_name == USER
    stored = real.job(job_id)
    assert stored["settings"] == {"message": "hello from rf echo", "sleep_duration_seconds": 1, "sleep_repeats": 1}
    assert stored["metadata"]["user.name"] == USER
    st.notice = ""
    wait_for(real, "the echo job to complete", lambda: job_status(job_id) == "completed")
    # told once: the refresh that saw it finish set the notice, the next one does not repeat it
    assert "rf echo" in st.notice and "completed" in st.notice, st.notice
    st.notice = ""
    bpy.ops.flamenco_panel.refresh()
    assert st.notice == ""
    select(job_id)
    assert st.tasks_job_id == job_id
    assert len(st.tasks) >= 2 and all(t.status == "completed" for t in st.tasks)
    assert find(st.jobs, job_id).progress == pytest.approx(1.0)
    echo = next(t for t in st.tasks if "echo" in t.name)
    text = task_log_text(echo.id)
    assert "hello from rf echo" in text.as_string()
    manager_tail = real.api("GET", f"/api/v3/tasks/{echo.id}/logtail")
    manager_tail = manager_tail.decode() if isinstance(manager_tail, bytes) else str(manager_tail or "")
    assert manager_tail.strip() and text.as_string().rstrip("\n").endswith(manager_tail.rstrip("\n"))
    assert "rf echo" in text.name
    bpy.ops.flamenco_panel.remove_logs()


def test_log_follow_of_a_running_task(real, shot):
    """Following re-reads only what is new until the task ends; the Text then holds the Manager's whole log."""
    st = state()
    logview = sub("blender.logview")
    job_id = echo_job("rf follow", seconds=2, repeats=4)

    def sleeping_task():
        select(job_id)
        return next((t for t in st.tasks if "sleep" in t.name and t.status == "active"), None)

    task = wait_for(real, "the sleep task to run", sleeping_task)
    task_id = task.id
    text = task_log_text(task_id, follow=True)
    assert task_id in logview.following
    first = text.as_string()
    deadline = time.monotonic() + 120
    while task_id in logview.following:
        assert time.monotonic() < deadline, f"still following after 120 s\n{real.logs()}"
        time.sleep(1)
        logview.following[task_id]["next"] = 0
        logview.poll()
    final = text.as_string()
    assert final.startswith(first) and len(final) > len(first)        # new lines appended, nothing repeated
    info = real.api("GET", f"/api/v3/tasks/{task_id}/log")             # where the Manager keeps the whole log
    manager_log = real.api("GET", info["url"])
    manager_log = manager_log.decode() if isinstance(manager_log, bytes) else str(manager_log)
    assert final.rstrip("\n") == manager_log.rstrip("\n")
    assert real.api("GET", f"/api/v3/tasks/{task_id}")["status"] == "completed"
    bpy.ops.flamenco_panel.remove_logs()


def test_render_job_writes_frames_and_last_rendered(real, shot):
    st = state()
    root = real.shared / "renders"
    job_id = submit("simple-blender-render", "rf render",
                    {"frames": "1-2", "chunk_size": 1, "render_output_root": str(root)})
    bpy.ops.flamenco_panel.refresh()
    assert find(st.jobs, job_id).is_mine
    settings = real.job(job_id)["settings"]
    assert settings["frames"] == "1-2" and settings["chunk_size"] == 1
    blendfile = pathlib.Path(settings["blendfile"])
    assert real.shared in blendfile.parents and blendfile.is_file()          # packed into shared storage
    wait_for(real, "the render job to complete", lambda: job_status(job_id) in {"completed", "failed"})
    assert job_status(job_id) == "completed", real.logs()
    frames = frames_of(real, job_id)
    assert str(frames[0]).startswith(str(root))
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


def test_mine_versus_all_and_someone_elses_job(real, sent, prefs):
    """Another submitter's job is listed under "all" only, and is never acted on unless allowed."""
    st = state()
    theirs = real.submit_echo("rf theirs", user="someone-else", paused=True)["id"]
    bpy.ops.flamenco_panel.refresh()
    job = find(st.jobs, theirs)
    assert job is not None and not job.is_mine and job.user_name == "someone-else"
    st.show_all_jobs = False
    assert "rf theirs" not in shown_jobs(st)
    st.show_all_jobs = True
    try:
        assert "rf theirs" in shown_jobs(st)
    finally:
        st.show_all_jobs = False
    # refused, and nothing but reads sent
    start = len(sent)
    for op in (lambda: bpy.ops.flamenco_panel.cancel_job(job_id=theirs),
               lambda: bpy.ops.flamenco_panel.requeue_job(job_id=theirs),
               lambda: bpy.ops.flamenco_panel.delete_job(job_id=theirs)):
        with pytest.raises(RuntimeError, match="someone-else"):
            op()
    assert posts_since(sent, start) == []
    assert real.job(theirs)["status"] == "paused"
    select(theirs)
    ops = draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).operators()
    assert not {"flamenco_panel.cancel_job", "flamenco_panel.requeue_job", "flamenco_panel.delete_job"} & set(ops)
    # with "Allow managing other users' jobs" on, the same cancel goes through
    prefs.allow_others = True
    try:
        assert bpy.ops.flamenco_panel.cancel_job(job_id=theirs) == {'FINISHED'}
    finally:
        prefs.allow_others = False
    wait_for(real, "their job to be canceled", lambda: job_status(theirs) == "canceled", timeout=30)


def test_actions_follow_the_status_rules(real, sent, shot):
    """A completed job offers requeue and delete, not cancel or pause; a refused action sends nothing."""
    st = state()
    job_id = echo_job("rf rules")
    wait_for(real, "the job to complete", lambda: job_status(job_id) == "completed")
    select(job_id)
    ops = draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context).operators()
    assert "flamenco_panel.requeue_job" in ops and "flamenco_panel.delete_job" in ops
    assert "flamenco_panel.cancel_job" not in ops and "flamenco_panel.pause_job" not in ops
    start = len(sent)
    with pytest.raises(RuntimeError, match="Cannot cancel"):
        bpy.ops.flamenco_panel.cancel_job(job_id=job_id)
    with pytest.raises(RuntimeError, match="Cannot pause"):
        bpy.ops.flamenco_panel.pause_job(job_id=job_id)
    assert posts_since(sent, start) == []
    assert real.job(job_id)["status"] == "completed"
    # priority, then delete (with the Manager's answer seen by the next refresh)
    assert bpy.ops.flamenco_panel.set_job_priority(job_id=job_id, priority=77) == {'FINISHED'}
    assert real.job(job_id)["priority"] == 77
    assert bpy.ops.flamenco_panel.delete_job(job_id=job_id) == {'FINISHED'}
    wait_for(real, "the job to be deleted", lambda: find(st.jobs, job_id) is None, timeout=60)


def test_panels_draw_what_the_real_farm_says(real, shot):
    """Every panel's draw() on the real Manager's data: its name and version, a job, the Worker, and the
    submit form built from the job types the Manager serves."""
    st = state()
    job_id = real.submit_echo("rf drawn", user=USER, priority=42, paused=True)["id"]
    try:
        assert bpy.ops.flamenco_panel.ping() == {'FINISHED'}
        bpy.ops.flamenco_panel.refresh()
        main = draw_panel(bpy.types.FLAMENCO_PT_main, bpy.context)
        assert main.has_text(realfarm.MANAGER_NAME) and main.has_text("3.9"), main.texts()
        select(job_id)
        jobs = draw_panel(bpy.types.FLAMENCO_PT_jobs, bpy.context)
        assert jobs.has_text("echo-sleep-test · paused · priority 42") and jobs.has_text(f"By {USER}"), jobs.texts()
        ops = set(jobs.operators())
        assert {"flamenco_panel.cancel_job", "flamenco_panel.requeue_job", "flamenco_panel.delete_job",
                "flamenco_panel.show_task_log"} <= ops and "flamenco_panel.pause_job" not in ops
        st.active_worker_index = next(i for i, w in enumerate(st.workers) if w.name == realfarm.WORKER_NAME)
        workers = draw_panel(bpy.types.FLAMENCO_PT_workers, bpy.context)
        assert workers.has_text("Version 3.9"), workers.texts()
        assert bpy.ops.flamenco_panel.load_job_types() == {'FINISHED'}
        bpy.context.scene.flamenco_panel.job_type_enum = "simple-blender-render"
        form = draw_panel(bpy.types.FLAMENCO_PT_submit, bpy.context)
        drawn = {kw["prop"] for kind, kw in form.log if kind == "prop"}
        assert sub("blender.settings").prop_name("render_output_root") in drawn, drawn
        assert any(text.lower().startswith("frames") for text in form.texts()), form.texts()   # automatic value
        assert "flamenco_panel.submit_job" in form.operators()
    finally:
        real.api("POST", f"/api/v3/jobs/{job_id}/setstatus", {"status": "canceled", "reason": "test done"})


def test_cancel_running_job(real, shot):
    job_id = echo_job("rf cancel", seconds=120)
    wait_for(real, "the long job to run", lambda: job_status(job_id) == "active")
    assert bpy.ops.flamenco_panel.cancel_job(job_id=job_id) == {'FINISHED'}
    assert job_status(job_id) in {"cancel-requested", "canceled"}            # at once
    wait_for(real, "the job to be canceled", lambda: job_status(job_id) == "canceled", timeout=60)
    # the Worker gives up its task: nothing of the job stays active
    wait_for(real, "the job's tasks to stop",
             lambda: all(t["status"] != "active" for t in real.tasks(job_id)), timeout=60)


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
    settle(runtime)
    assert st.connection == 'CONNECTED', st.message
    assert any(w.name == realfarm.WORKER_NAME for w in st.workers)
    assert {j.id for j in st.jobs} == {j["id"] for j in real.api("GET", "/api/v3/jobs")["jobs"]}


def test_manager_down_keeps_the_last_data_then_recovers(real, runtime):
    """The real Manager stops: the refresh says so and keeps what was shown; it comes back: all is current."""
    st = state()
    real.submit_echo("rf kept", user=USER)
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    shown = ([(j.id, j.status) for j in st.jobs], [w.id for w in st.workers])
    assert st.connection == 'CONNECTED' and shown[0] and shown[1]
    real.stop_manager()
    try:
        bpy.ops.flamenco_panel.refresh()
        settle(runtime)
        assert st.connection == 'ERROR'
        assert f"127.0.0.1:{real.port}" in st.message and "Traceback" not in st.message, st.message
        assert ([(j.id, j.status) for j in st.jobs], [w.id for w in st.workers]) == shown     # kept, marked stale
    finally:
        real.restart_manager()
    bpy.ops.flamenco_panel.refresh()
    settle(runtime)
    assert st.connection == 'CONNECTED', st.message
    assert {j.id for j in st.jobs} == {j["id"] for j in real.api("GET", "/api/v3/jobs")["jobs"]}
    runtime.force_interactive = False
    wait_for(real, "the Worker to be back", lambda: real.awake_worker(), timeout=60)


def test_every_request_body_matches_the_served_spec(real, sent):
    """Last, so it sees what all the tests above sent."""
    problems, posts = spec_problems(real, sent)
    assert problems == []
    assert {"jobs", "check", "setstatus", "setpriority"} <= posts, posts
