# SPDX-License-Identifier: GPL-3.0-or-later
"""`blender -c flamenco …` in real bpy against the fake Manager: every subcommand, exit codes, output shapes."""
from __future__ import annotations

import ctypes
import json
import threading
import time

import bpy
import pytest

from fakemanager import FakeManager

MODULE = "bl_ext.user_default.flamenco_panel"
OFFLINE = "Online access is off: pass --online-mode before -c (blender --online-mode -c flamenco …)"


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


@pytest.fixture
def farm(prefs, online, fake_manager):
    """Jobs of mine (ana) and of bob, oldest first; two workers; no request made yet."""
    old_user, old_others = prefs.user_name, prefs.allow_others
    prefs.user_name = "ana"
    s = fake_manager.state
    now = time.time()
    jobs = {
        "old": s.add_job("my old", metadata={"user.name": "ana"}, status="completed", tasks=1, created=now - 300),
        "active": s.add_job("my active", metadata={"user.name": "ana"}, status="active", tasks=2, created=now - 200),
        "theirs": s.add_job("their job", metadata={"user.name": "bob"}, status="active", tasks=1, created=now - 100),
    }
    workers = {"w1": s.add_worker("w1"), "w2": s.add_worker("w2", status="asleep")}
    yield fake_manager, jobs, workers
    prefs.user_name, prefs.allow_others = old_user, old_others


def sent_status_changes(fm) -> int:
    return fm.count("POST", r"/api/v3/jobs/[^/]+/setstatus")


# --- registration, help, usage errors ---------------------------------------------------------


def test_registered_as_cli_command(extension):
    registration = sub("blender.registration")
    assert registration._cli_handle is not None
    extension.unregister()
    try:
        assert registration._cli_handle is None
    finally:
        extension.register()
    assert registration._cli_handle is not None


def test_help_returns_zero(run):
    code, out, _ = run("--help")
    assert code == 0
    for name in ("status", "types", "jobs", "workers", "tasks", "submit", "cancel", "pause", "requeue", "log",
                 "worker", "--manager", "--json"):
        assert name in out
    code, out, _ = run("submit", "--help")
    assert code == 0 and "--set KEY=VALUE" in out and "--wait" in out
    code, out, _ = run("worker", "--help")
    assert code == 0 and "awake" in out


@pytest.mark.parametrize("argv, expected", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["tasks"], "the following arguments are required: job"),
    (["log"], "required: task"),
    (["worker", "w1", "dancing"], "invalid choice"),
    (["submit", "x.blend", "--set", "frames"], "expected KEY=VALUE"),
    (["submit", "x.blend", "--set", "=5"], "expected KEY=VALUE"),
    (["submit", "x.blend", "--priority", "101"], "priority must be 0…100"),
    (["submit", "x.blend", "--timeout", "soon"], "seconds"),
    (["--manager", "ftp://farm", "status"], "--manager"),
    (["submit", "/nonexistent/shot.blend"], "no such file"),
])
def test_usage_errors_exit_2_and_send_nothing(run, farm, argv, expected):
    fm = farm[0]
    code, out, err = run(*argv)
    assert code == 2, err
    assert expected in err
    assert "usage: blender -c flamenco" in err
    assert "Traceback" not in err and out == ""
    assert fm.count() == 0


def test_online_access_off_sends_nothing(run, prefs, fake_manager):
    assert not bpy.app.online_access
    for argv in (["status"], ["jobs", "--all"], ["cancel", "0123abcd"], ["submit", __file__],
                 ["worker", "w1", "asleep"]):
        code, out, err = run(*argv)
        assert code == 1
        assert err.strip() == OFFLINE
        assert out == ""
    assert fake_manager.count() == 0


# --- reading the farm ----------------------------------------------------------------------------


def test_status(run, farm):
    fm = farm[0]
    code, out, err = run("status")
    assert code == 0, err
    assert "Fake Flamenco Manager" in out and fm.version in out and fm.url in out
    assert "ana" in out
    code, out, _ = run("status", "--json")
    data = json.loads(out)
    assert data == {"url": fm.url, "name": "Fake Flamenco Manager", "version": fm.version,
                    "farm_status": data["farm_status"], "user_name": "ana"}
    assert data["farm_status"]


def test_types(run, farm):
    code, out, err = run("types")
    assert code == 0, err
    assert "simple-blender-render" in out and "echo-sleep-test" in out
    assert "SETTING" in out and "chunk_size" in out and "auto: f'{C.scene.frame_start}" in out
    code, out, _ = run("--json", "types")
    types = {t["name"]: t for t in json.loads(out)["job_types"]}
    assert set(types) == {"simple-blender-render", "echo-sleep-test"}
    frames = next(s for s in types["simple-blender-render"]["settings"] if s["key"] == "frames")
    assert frames["type"] == "string" and frames["required"] is True and frames["eval"]
    chunk = next(s for s in types["simple-blender-render"]["settings"] if s["key"] == "chunk_size")
    assert chunk["default"] == 1


def test_jobs_mine_newest_first_as_table(run, farm):
    _, jobs, _ = farm
    code, out, err = run("jobs")
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["ID", "NAME", "STATUS", "PROGRESS", "PRIORITY", "TYPE", "CREATED"]
    assert [line[:8] for line in lines[1:]] == [jobs["active"]["id"][:8], jobs["old"]["id"][:8]]
    status_col = header.index("STATUS")
    assert lines[1][status_col:].startswith("active") and lines[2][status_col:].startswith("completed")
    assert lines[2][header.index("PROGRESS"):].startswith("100%")
    assert "their job" not in out


def test_jobs_all_status_filter_and_json(run, farm):
    _, jobs, _ = farm
    code, out, _ = run("jobs", "--all")
    assert code == 0
    assert "USER" in out.splitlines()[0] and "their job" in out and "bob" in out
    code, out, _ = run("jobs", "--all", "--status", "active", "--json")
    data = json.loads(out)
    assert [j["name"] for j in data["jobs"]] == ["their job", "my active"]
    assert [j["is_mine"] for j in data["jobs"]] == [False, True]
    assert data["jobs"][1]["id"] == jobs["active"]["id"]
    assert data["jobs"][1]["metadata"]["user.name"] == "ana"
    assert {"status", "priority", "type", "created", "progress", "settings"} <= set(data["jobs"][0])
    code, out, _ = run("jobs", "--status", "failed", "canceled")
    assert code == 0 and out.strip() == "No jobs."


def test_workers(run, farm):
    _, _, workers = farm
    code, out, err = run("workers")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "STATUS", "VERSION"]
    assert "w1" in lines[1] and "awake" in lines[1] and "w2" in lines[2] and "asleep" in lines[2]
    code, out, _ = run("workers", "--json")
    data = json.loads(out)["workers"]
    assert [(w["id"], w["name"], w["status"]) for w in data] == [
        (workers["w1"]["id"], "w1", "awake"), (workers["w2"]["id"], "w2", "asleep")]


def test_tasks_by_name_prefix_and_full_id(run, farm):
    fm, jobs, _ = farm
    job = jobs["active"]
    task_ids = [t["id"] for t in fm.state.job_tasks(job["id"])]
    code, out, err = run("tasks", "my active")
    assert code == 0, err
    assert out.splitlines()[0].split()[:4] == ["ID", "NAME", "STATUS", "PROGRESS"]
    assert [line[:8] for line in out.splitlines()[1:]] == [t[:8] for t in task_ids]
    code, out, _ = run("tasks", job["id"][:6], "--json")
    data = json.loads(out)
    assert data["job_id"] == job["id"]
    assert [t["id"] for t in data["tasks"]] == task_ids
    assert {"name", "status", "progress", "worker_name"} <= set(data["tasks"][0])
    fm.clear_requests()
    code, _, _ = run("tasks", job["id"])
    assert code == 0
    assert fm.count("GET", "/api/v3/jobs") == 0   # a full id needs no listing


def test_tasks_of_someone_else_by_prefix_but_not_by_name(run, farm):
    _, jobs, _ = farm
    assert run("tasks", jobs["theirs"]["id"][:8])[0] == 0
    code, _, err = run("tasks", "their job")   # names only pick among your own jobs
    assert code == 1 and "No job matches 'their job'" in err


def test_ambiguous_prefix_is_a_usage_error_listing_candidates(run, farm):
    fm = farm[0]
    for i in (1, 2):
        fm.state.add_job(f"twin {i}", metadata={"user.name": "ana"}, job_id=f"abcd000{i}-0000-4000-8000-00000000000{i}")
    code, out, err = run("tasks", "abcd")
    assert code == 2
    assert "matches 2 jobs" in err and "abcd0001 twin 1" in err and "abcd0002 twin 2" in err
    assert run("tasks", "abcd0002")[0] == 0
    code, _, err = run("tasks", "abc")
    assert code == 2 and "at least 4 characters" in err
    code, _, err = run("tasks", "ffff")
    assert code == 1 and "No job matches 'ffff'" in err
    code, out, err = run("tasks", "00000000-0000-4000-8000-000000000000")   # a full id of no job
    assert code == 1 and err.startswith("Error: ") and out == ""


def test_manager_error_exit_1_without_traceback(run, farm):
    fm = farm[0]
    fm.fault("GET", r"/api/v3/jobs", "status", code=500)
    code, out, err = run("jobs")
    assert code == 1
    assert err.startswith("Error: ") and "500" in err
    assert "Traceback" not in err and out == ""


# --- global overrides ----------------------------------------------------------------------------


def test_manager_override_for_this_run_only(run, prefs, farm):
    fm = farm[0]
    with FakeManager(name="Other Manager") as other:
        code, out, err = run("--manager", other.url, "status")
        assert code == 0, err
        assert "Other Manager" in out
        assert other.count() > 0
    assert fm.count() == 0
    assert prefs.manager_url == fm.url


def test_user_override_for_this_run_only(run, prefs, farm):
    code, out, _ = run("jobs", "--user", "bob")
    assert code == 0
    assert "their job" in out and "my active" not in out
    assert prefs.user_name == "ana"


def test_manager_3_5_lists_jobs_and_refuses_pause(run, prefs, farm):
    with FakeManager(version="3.5") as old:
        old.state.add_job("old farm job", metadata={"user.name": "ana"}, status="active")
        code, out, err = run("--manager", old.url, "jobs")
        assert code == 0, err
        assert "old farm job" in out
        assert old.count("POST", "/api/v3/jobs/query") == 1
        code, _, err = run("--manager", old.url, "pause", "old farm job")
        assert code == 1 and "cannot pause" in err
        assert sent_status_changes(old) == 0


# --- job and worker actions ----------------------------------------------------------------------


def test_cancel_my_job(run, farm):
    fm, jobs, _ = farm
    code, out, err = run("cancel", "my active")
    assert code == 0, err
    assert out.startswith('Job "my active"') and "cancel-requested" in out
    assert fm.state.get_job(jobs["active"]["id"])["status"] in ("cancel-requested", "canceled")
    assert fm.last("POST", r"/api/v3/jobs/[^/]+/setstatus").json["status"] == "cancel-requested"


def test_cancel_someone_elses_job_is_refused_and_sends_nothing(run, prefs, farm):
    fm, jobs, _ = farm
    code, out, err = run("cancel", jobs["theirs"]["id"])
    assert code == 1
    assert "belongs to bob" in err and "Traceback" not in err and out == ""
    assert sent_status_changes(fm) == 0
    assert fm.state.get_job(jobs["theirs"]["id"])["status"] == "active"
    prefs.allow_others = True
    code, out, _ = run("cancel", jobs["theirs"]["id"][:8], "--json")
    assert code == 0
    assert json.loads(out) == {"job_id": jobs["theirs"]["id"], "action": "cancel", "status": "cancel-requested",
                               "job_name": "their job"}
    assert sent_status_changes(fm) == 1


def test_pause_and_requeue_follow_the_status_rules(run, farm):
    fm, jobs, _ = farm
    code, _, err = run("pause", "my old")          # completed: cannot pause
    assert code == 1 and "Cannot pause" in err
    assert sent_status_changes(fm) == 0
    code, out, _ = run("pause", "my active", "--json")
    assert code == 0 and json.loads(out)["status"] == "pause-requested"
    code, out, _ = run("requeue", "my old")
    assert code == 0 and "requeueing" in out
    assert fm.last("POST", r"/api/v3/jobs/[^/]+/setstatus").json["status"] == "requeueing"


def test_worker_status_lazy_unless_now(run, farm):
    fm, _, workers = farm
    code, out, err = run("worker", "w1", "asleep")
    assert code == 0, err
    assert 'Worker "w1": asleep (after its current task)' in out
    body = fm.last("POST", r"/api/v3/worker-mgt/workers/[^/]+/setstatus").json
    assert body == {"status": "asleep", "is_lazy": True}
    code, out, _ = run("worker", workers["w2"]["id"][:5], "awake", "--now", "--json")
    assert code == 0
    assert json.loads(out) == {"worker_id": workers["w2"]["id"], "status": "awake", "lazy": False,
                               "worker_name": "w2"}
    assert fm.last("POST", r"/api/v3/worker-mgt/workers/[^/]+/setstatus").json["is_lazy"] is False


# --- logs ----------------------------------------------------------------------------------------


def test_log_tail_cleaned(run, farm):
    fm, jobs, _ = farm
    task = fm.state.job_tasks(jobs["active"]["id"])[0]
    fm.state.append_log_lines(task["id"], ["starting", "\x1b[31mred\x1b[0m frame 1", "done"])
    code, out, err = run("log", task["id"][:8])
    assert code == 0, err
    assert out == "starting\nred frame 1\ndone\n"
    code, out, _ = run("log", task["id"], "--json")
    assert json.loads(out) == {"task_id": task["id"], "task_name": "task-1", "task_status": task["status"],
                               "job_id": jobs["active"]["id"], "text": "starting\nred frame 1\ndone\n"}
    other = fm.state.job_tasks(jobs["active"]["id"])[1]
    code, out, err = run("log", other["id"])
    assert code == 0 and out == "" and "has no log yet" in err


def test_log_task_prefix_searches_my_jobs_or_the_given_job(run, farm):
    fm, jobs, _ = farm
    theirs = fm.state.job_tasks(jobs["theirs"]["id"])[0]
    fm.state.append_log(theirs["id"], "their log")
    code, _, err = run("log", theirs["id"][:8])
    assert code == 1 and "No task matches" in err
    code, out, _ = run("log", theirs["id"][:8], "--job", jobs["theirs"]["id"][:8])
    assert code == 0 and out == "their log\n"


def test_log_follow_prints_only_new_text_until_the_task_ends(run, farm):
    fm, jobs, _ = farm
    task = fm.state.job_tasks(jobs["active"]["id"])[0]
    fm.state.set_task_status(task["id"], "active")
    fm.state.append_log_lines(task["id"], [f"old line {i}" for i in range(200)])   # > 2 KiB: only the end shows

    def worker():
        for i in range(3):
            fm.wait_for("GET", r"/job-files/.*", count=i + 1, timeout=10)
            fm.state.append_log(task["id"], f"new line {i}")
        fm.wait_for("GET", r"/job-files/.*", count=4, timeout=10)
        fm.state.set_task_status(task["id"], "completed")

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    code, out, err = run("log", task["id"], "--follow")
    thread.join(10)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-3:] == ["new line 0", "new line 1", "new line 2"]
    assert lines[0].startswith("old line ") and "old line 0" not in lines   # starts at a whole line
    assert len(out.encode()) < 2048 + 100
    assert len(lines) == len(set(lines))   # nothing printed twice


def test_log_follow_of_a_finished_task_reads_once(run, farm):
    fm, jobs, _ = farm
    task = fm.state.job_tasks(jobs["old"]["id"])[0]
    fm.state.append_log_lines(task["id"], ["rendered", "done"])
    fm.clear_requests()
    code, out, err = run("log", task["id"], "--follow", "--json")
    assert code == 0, err
    assert json.loads(out) == {"task_id": task["id"], "task_name": task["name"], "task_status": "completed",
                               "job_id": jobs["old"]["id"], "text": "rendered\ndone\n"}
    assert fm.count("GET", r"/job-files/.*") == 1


def test_log_follow_times_out(run, farm):
    fm, jobs, _ = farm
    task = fm.state.job_tasks(jobs["active"]["id"])[0]
    fm.state.set_task_status(task["id"], "active")
    fm.state.append_log(task["id"], "working")
    code, out, err = run("log", task["id"], "--follow", "--timeout", "0.2", "--json")
    assert code == 1
    assert "Stopped following after 0.2 s" in err


# --- submit --------------------------------------------------------------------------------------


@pytest.fixture
def blend(tmp_path):
    """A saved scene (frames 1–3, no Flamenco choices saved) in its own project folder."""
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    props = scene.flamenco_panel
    props.job_type, props.job_name, props.priority, props.worker_tag, props.submit_paused = "", "", 50, "", False
    for key in ("flamenco_panel_values", "flamenco_panel_manual"):
        scene.pop(key, None)
    path = tmp_path / "project" / "shot.blend"
    path.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    ctypes.CDLL(None).fflush(None)   # Blender's "Info: Saved" belongs to this setup, not to the next command
    return path


def submitted(fm) -> list[dict]:
    return list(fm.state.jobs.values())


def test_submit_packs_into_shared_storage(run, prefs, farm, storage, blend, tmp_path):
    fm = farm[0]
    before = blend.read_bytes()
    out_dir = tmp_path / "renders"
    code, out, err = run("submit", blend, "--name", "shot 1", "--priority", "70", "--set",
                         f"render_output_root={out_dir}", "--set", "chunk_size=2")
    assert code == 0, err
    assert "Opening" in err and "Submitted" in err
    job = next(j for j in submitted(fm) if j["name"] == "shot 1")
    assert out.strip().startswith('Job "shot 1" ' + job["id"])
    assert job["metadata"]["user.name"] == "ana"
    assert job["priority"] == 70 and job["type"] == "simple-blender-render"
    settings = job["settings"]
    assert settings["frames"] == "1-3" and settings["chunk_size"] == 2
    assert settings["render_output_root"] == str(out_dir)
    assert settings["blendfile"].startswith("{storage}/") and settings["blendfile"].endswith("/shot.blend")
    packed = storage / settings["blendfile"].removeprefix("{storage}/")
    assert packed.is_file()
    assert [t["name"] for t in fm.state.job_tasks(job["id"])][:2] == ["render-1-2", "render-3"]
    assert blend.read_bytes() == before                        # the artist's file is never written
    assert sorted(p.name for p in blend.parent.iterdir()) == ["shot.blend"]   # no copy left behind


def test_submit_json_keeps_stdout_clean(cli, farm, storage, blend, tmp_path, capfd):
    """Blender's own "Read blend…"/"Info:" lines go to stderr, so stdout is one JSON document."""
    fm = farm[0]
    code = cli.execute(["submit", str(blend), "--json", "--type", "echo-sleep-test", "--set", "message=hello",
                        "--name", "echo job", "--user", "carl"])
    out, err = capfd.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["job"]["name"] == "echo job" and data["job"]["status"] == "queued"
    assert data["job"]["metadata"]["user.name"] == "carl"
    job = fm.state.get_job(data["job"]["id"])
    assert job["settings"] == {"message": "hello", "sleep_duration_seconds": 1, "sleep_repeats": 1}
    assert "Read blend" in err


def test_submit_tag_and_paused(run, farm, storage, blend, tmp_path):
    fm = farm[0]
    tag = fm.state.add_tag("gpu")
    code, _, err = run("submit", blend, "--tag", "cpu", "--set", f"render_output_root={tmp_path}")
    assert code == 2 and "unknown worker tag 'cpu'" in err and "gpu" in err
    code, out, err = run("submit", blend, "--tag", "gpu", "--paused", "--json", "--name", "tagged",
                         "--set", f"render_output_root={tmp_path}")
    assert code == 0, err
    job = fm.state.get_job(json.loads(out)["job"]["id"])
    assert job["worker_tag"] == tag["id"] and job["status"] == "paused"


def test_submit_usage_and_setting_errors(run, farm, storage, blend, tmp_path):
    fm = farm[0]
    code, _, err = run("submit", blend, "--type", "no-such-type")
    assert code == 2 and "unknown job type 'no-such-type'" in err and "simple-blender-render" in err
    code, _, err = run("submit", blend, "--set", f"render_output_root={tmp_path}", "--set", "chunk_size=lots")
    assert code == 1 and "chunk_size" in err and "whole number" in err
    code, _, err = run("submit", blend, "--set", f"render_output_root={tmp_path}", "--set", "colour=blue")
    assert code == 1 and "no setting 'colour'" in err
    code, _, err = run("submit", blend)   # render_output_root has no default and no automatic value
    assert code == 1 and "render_output_root" in err
    assert "Traceback" not in err
    assert fm.count("POST", "/api/v3/jobs") == 0


def _finish_when_submitted(fm, name: str, status: str) -> threading.Thread:
    """Plays the farm: the job named `name` runs, then ends with `status`."""
    def play():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with fm.state.lock:
                found = [j["id"] for j in fm.state.jobs.values() if j["name"] == name]
            if found:
                fm.wait_for("GET", f"/api/v3/jobs/{found[0]}", count=1, timeout=10)
                fm.state.set_job_status(found[0], "active")
                fm.wait_for("GET", f"/api/v3/jobs/{found[0]}", count=2, timeout=10)
                fm.state.set_job_status(found[0], status)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("final, code", [("completed", 0), ("failed", 1)])
def test_submit_wait(run, farm, storage, blend, tmp_path, final, code):
    fm = farm[0]
    thread = _finish_when_submitted(fm, f"waited {final}", final)
    exit_code, out, err = run("submit", blend, "--wait", "--json", "--name", f"waited {final}",
                              "--set", f"render_output_root={tmp_path}")
    thread.join(5)
    assert exit_code == code and out, err
    assert json.loads(out)["job"]["status"] == final
    progress = [line for line in err.splitlines() if line.startswith(f'Job "waited {final}": ')]
    assert progress == [f'Job "waited {final}": queued', f'Job "waited {final}": active 0%',
                        f'Job "waited {final}": {final}']


def test_submit_wait_times_out(run, farm, storage, blend, tmp_path):
    code, out, err = run("submit", blend, "--wait", "--timeout", "0.3", "--set", f"render_output_root={tmp_path}")
    assert code == 1
    assert "Gave up waiting after 0.3 s" in err and "queued" in out
