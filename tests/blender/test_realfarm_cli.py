# SPDX-License-Identifier: GPL-3.0-or-later
"""`blender -c flamenco …` (the command's `execute(argv)`) in real bpy against a real Flamenco Manager and
Worker (3.9): every subcommand, `--json` shapes, exit codes, usage errors, and a `submit --wait` that ends
when the Worker has rendered the frames. Skips, saying why, without the binaries (tests/realfarm.py).
"""
from __future__ import annotations

import json
import time

import bpy
import pytest

import realfarm
from conftest import digest
from farmsteps import USER, frames_of, posts_since, save_shot, spec_problems

_REASON = realfarm.missing_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture
def farm(real_farm, pointed_at, cli, monkeypatch):
    monkeypatch.setattr(cli, "POLL_SECONDS", 0.5)   # a real farm: no need to ask 20 times a second
    return pointed_at(real_farm)


@pytest.fixture
def blend(tmp_path):
    """A saved two-frame shot in a project folder outside shared storage."""
    path = tmp_path / "project" / "shot.blend"
    save_shot(path)
    yield path
    bpy.ops.wm.read_homefile(use_empty=True)


def wait_until(farm, what: str, check, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{farm.logs()}")
        time.sleep(0.5)


def cli_submit_echo(run, blend, name: str, *extra) -> dict:
    code, out, err = run("submit", blend, "--type", "echo-sleep-test", "--name", name, "--json",
                         "--set", f"message=hello from {name}", *extra)
    assert code == 0, err
    return json.loads(out)["job"]


def test_status_types_and_workers(farm, run):
    code, out, err = run("status")
    assert code == 0, err
    assert realfarm.MANAGER_NAME in out and "3.9" in out and farm.url in out and USER in out
    code, out, _ = run("status", "--json")
    data = json.loads(out)
    assert data["url"] == farm.url and data["name"] == realfarm.MANAGER_NAME
    assert data["version"].startswith("3.9") and data["farm_status"] in {"idle", "active", "waiting", "asleep",
                                                                         "inoperative", "starting", "unknown"}
    code, out, _ = run("types")
    assert code == 0 and "simple-blender-render" in out and "echo-sleep-test" in out and "render_output_root" in out
    code, out, _ = run("--json", "types")
    types = {t["name"]: t for t in json.loads(out)["job_types"]}
    assert {"simple-blender-render", "echo-sleep-test"} <= set(types)
    frames = next(s for s in types["simple-blender-render"]["settings"] if s["key"] == "frames")
    assert frames["required"] is True and "C.scene.frame_start" in frames["eval"]
    code, out, _ = run("workers")
    assert code == 0 and realfarm.WORKER_NAME in out and "awake" in out
    code, out, _ = run("workers", "--json")
    worker = next(w for w in json.loads(out)["workers"] if w["name"] == realfarm.WORKER_NAME)
    assert worker["status"] == "awake" and worker["version"].startswith("3.9")


def test_submit_wait_renders_then_jobs_tasks_log_and_rules(farm, run, blend, sent):
    before = digest(blend)
    out_root = farm.shared / "cli-renders"
    code, out, err = run("submit", blend, "--wait", "--json", "--name", "cli render", "--priority", "60",
                         "--set", f"render_output_root={out_root}", "--set", "chunk_size=2", "--timeout", "300")
    assert code == 0, f"{err}\n{farm.logs()}"
    job = json.loads(out)["job"]
    assert job["status"] == "completed" and job["name"] == "cli render" and job["priority"] == 60
    assert 'Job "cli render": completed' in err.splitlines()
    frames = frames_of(farm, job["id"])
    assert str(frames[0]).startswith(str(out_root))
    assert digest(blend) == before                         # the artist's file is never written
    assert sorted(p.name for p in blend.parent.iterdir()) == ["shot.blend"]
    stored = farm.job(job["id"])
    assert stored["metadata"]["user.name"] == USER and stored["settings"]["frames"] == "1-2"
    # the job in the lists, by name and by id prefix
    code, out, _ = run("jobs", "--status", "completed")
    assert code == 0 and any(line.startswith(job["id"][:8]) and "cli render" in line for line in out.splitlines())
    code, out, _ = run("jobs", "--json")
    listed = next(j for j in json.loads(out)["jobs"] if j["id"] == job["id"])
    assert listed["is_mine"] and listed["status"] == "completed"
    code, out, _ = run("tasks", "cli render")
    assert code == 0 and "render-1,2" in out and "completed" in out
    code, out, _ = run("tasks", job["id"][:8], "--json")
    tasks = json.loads(out)["tasks"]
    assert [t["id"] for t in tasks] == [t["id"] for t in farm.tasks(job["id"])]
    render = next(t for t in tasks if t["name"].startswith("render-"))
    # the log: a finished task is read once, --follow or not
    code, out, err = run("log", render["id"][:8])
    assert code == 0, err
    tail = farm.api("GET", f"/api/v3/tasks/{render['id']}/logtail")
    tail = tail.decode() if isinstance(tail, bytes) else str(tail)
    assert "Blender quit" in out and out.rstrip("\n") == tail.rstrip("\n")    # the Manager's tail, as it is
    code, followed, _ = run("log", render["id"], "--follow", "--json")
    assert code == 0 and json.loads(followed)["task_status"] == "completed"
    assert json.loads(followed)["text"] == out
    # a completed job cannot be paused or canceled: refused, nothing sent
    start = len(sent)
    code, out, err = run("pause", "cli render")
    assert code == 1 and "Cannot pause" in err and out == ""
    code, _, err = run("cancel", job["id"][:8])
    assert code == 1 and "Cannot cancel" in err
    assert posts_since(sent, start) == [] and farm.job(job["id"])["status"] == "completed"


def test_log_follow_of_a_running_task_prints_the_whole_log_once(farm, run, blend):
    job = cli_submit_echo(run, blend, "cli follow", "--set", "sleep_duration_seconds=2", "--set", "sleep_repeats=4")

    def running_sleep_task():
        return next((t for t in farm.tasks(job["id"]) if "sleep" in t["name"] and t["status"] == "active"), None)

    wait_until(farm, "the sleep task to run", running_sleep_task)
    task = running_sleep_task() or next(t for t in farm.tasks(job["id"]) if "sleep" in t["name"])
    code, out, err = run("log", task["id"], "--follow", "--timeout", "120")
    assert code == 0, err
    info = farm.api("GET", f"/api/v3/tasks/{task['id']}/log")
    whole = farm.api("GET", info["url"])
    whole = whole.decode() if isinstance(whole, bytes) else str(whole)
    assert out.rstrip("\n") == whole.rstrip("\n")            # all of it, nothing twice
    assert farm.api("GET", f"/api/v3/tasks/{task['id']}")["status"] == "completed"


def test_requeue_pause_and_cancel(farm, run, blend, sent):
    job = cli_submit_echo(run, blend, "cli control", "--paused", "--set", "sleep_duration_seconds=5",
                      "--set", "sleep_repeats=20")
    assert farm.job(job["id"])["status"] == "paused"
    code, out, err = run("requeue", "cli control")               # resume
    assert code == 0, err
    assert out.startswith('Job "cli control"') and farm.job(job["id"])["status"] in {"queued", "active"}
    wait_until(farm, "the job to run", lambda: farm.job(job["id"])["status"] == "active")
    code, out, _ = run("pause", job["id"][:8], "--json")
    assert code == 0 and json.loads(out) == {"job_id": job["id"], "action": "pause", "status": "pause-requested",
                                             "job_name": "cli control"}
    wait_until(farm, "the job to pause", lambda: farm.job(job["id"])["status"] == "paused", timeout=90)
    code, out, err = run("cancel", job["id"])
    assert code == 0, err
    wait_until(farm, "the job to be canceled", lambda: farm.job(job["id"])["status"] == "canceled", timeout=60)
    # canceled: cancel again is refused with nothing sent; requeue is offered
    start = len(sent)
    code, out, err = run("cancel", job["id"])
    assert code == 1 and "Cannot cancel" in err and out == ""
    assert posts_since(sent, start) == [] and farm.job(job["id"])["status"] == "canceled"


def test_someone_elses_job_is_refused_and_nothing_sent(farm, run, sent):
    theirs = farm.submit_echo("cli theirs", user="someone-else", paused=True)
    try:
        code, out, _ = run("jobs")
        assert code == 0 and "cli theirs" not in out
        code, out, _ = run("jobs", "--all")
        assert "cli theirs" in out and "someone-else" in out
        start = len(sent)
        for action in ("cancel", "requeue"):
            code, out, err = run(action, theirs["id"])
            assert code == 1 and "belongs to someone-else" in err and "Traceback" not in err and out == ""
        assert posts_since(sent, start) == []
        assert farm.job(theirs["id"])["status"] == "paused"
    finally:
        farm.api("POST", f"/api/v3/jobs/{theirs['id']}/setstatus", {"status": "cancel-requested", "reason": "test"})


def test_worker_asleep_and_awake(farm, run):
    worker = farm.awake_worker()
    assert worker
    code, out, err = run("worker", realfarm.WORKER_NAME, "asleep", "--now")
    assert code == 0, err
    assert out.startswith(f'Worker "{realfarm.WORKER_NAME}": asleep')
    wait_until(farm, "the Worker to sleep",
               lambda: next(w for w in farm.workers() if w["id"] == worker["id"])["status"] == "asleep", 60)
    code, out, _ = run("worker", worker["id"][:8], "awake", "--now", "--json")
    assert code == 0 and json.loads(out) == {"worker_id": worker["id"], "status": "awake", "lazy": False,
                                             "worker_name": realfarm.WORKER_NAME}
    wait_until(farm, "the Worker to wake", lambda: farm.awake_worker() is not None, 60)


def test_exit_codes_for_usage_and_manager_errors(farm, run, sent):
    start = len(sent)
    code, out, err = run("worker", realfarm.WORKER_NAME, "dancing")
    assert code == 2 and "invalid choice" in err and out == ""
    code, _, err = run("submit", "/nonexistent/shot.blend")
    assert code == 2 and "no such file" in err
    assert sent[start:] == []                                   # usage errors ask the Manager nothing
    code, out, err = run("tasks", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and err.startswith("Error: ") and "Traceback" not in err and out == ""
    code, _, err = run("log", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and err.startswith("Error: ")
    closed = f"http://127.0.0.1:{realfarm.free_port()}"
    code, out, err = run("--manager", closed, "status")
    assert code == 1 and "Traceback" not in err and out == "" and closed.split("//")[1] in err


def test_every_request_body_matches_the_served_spec(farm, sent):
    problems, posts = spec_problems(farm, sent)
    assert problems == []
    assert {"jobs", "check", "setstatus"} <= posts, posts
