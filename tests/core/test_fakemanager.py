# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of tests/fakemanager.py: the fake Flamenco Manager other tests talk to."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import requests

from tests.fakemanager import TINY_JPEG, FakeManager, version_tuple

VERSIONS = ["3.5", "3.6", "3.7", "3.8.5", "3.9-beta1"]
TIMEOUT = (2, 5)  # connect, read
STALL_GUARD = (2, 0.5)

SBR_SETTINGS = {
    "frames": "1-10",
    "chunk_size": 3,
    "render_output_root": "/srv/flamenco/renders",
    "add_path_components": 0,
    "render_output_path": "/srv/flamenco/renders/Shot/{timestamp}/######",
    "blendfile": "/srv/flamenco/jobs/shot.blend",
    "fps": 24.0,
    "format": "PNG",
    "image_file_extension": ".png",
    "has_previews": False,
    "scene": "Scene",
}


def sbr_job(**kw):
    job = {"name": "Shot", "type": "simple-blender-render", "priority": 50, "submitter_platform": "linux",
           "settings": dict(SBR_SETTINGS), "metadata": {"user.name": "Ann", "project": "Spring"}}
    job.update(kw)
    return job


@pytest.fixture
def fm():
    with FakeManager() as manager:
        yield manager


@pytest.fixture(params=VERSIONS)
def vfm(request):
    with FakeManager(request.param) as manager:
        yield manager


def get(fm, path, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(fm.url + path, **kw)


def post(fm, path, body=None, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.post(fm.url + path, json=body, **kw)


def assert_schema(fm, instance, name):
    osv = pytest.importorskip("openapi_schema_validator")
    schema = {"$ref": f"#/components/schemas/{name}", "components": fm.spec.doc["components"]}
    osv.OAS30Validator(schema).validate(instance)


def is_handler_error(resp, code):
    body = resp.json()
    return resp.status_code == code and body.get("code") == code and isinstance(body.get("message"), str)


def is_validation_error(resp):
    body = resp.json()
    return resp.status_code == 400 and set(body) == {"message"}


# --------------------------------------------------------------------------- lifecycle, binding


def test_binds_loopback_only(fm):
    host, port = fm.address
    assert host == "127.0.0.1" and port > 0
    assert fm.url == f"http://127.0.0.1:{port}"
    assert get(fm, "/api/v3/version").status_code == 200
    # Another loopback address reaches the same interface, but nothing listens there.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=1).close()


def test_context_manager_stops_server():
    with FakeManager() as manager:
        port = manager.port
        assert manager.running
    assert not manager.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_wakes_stalled_handlers_promptly():
    manager = FakeManager().start()
    manager.fault("GET", "/api/v3/version", "stall")
    errors = []

    def client():
        try:
            requests.get(manager.url + "/api/v3/version", timeout=(2, 30))
        except requests.RequestException as e:
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    assert manager.wait_for("GET", "/api/v3/version", count=3, timeout=5)
    started = time.monotonic()
    manager.stop()
    assert time.monotonic() - started < 2
    for t in threads:
        t.join(3)
        assert not t.is_alive()
    assert len(errors) == 3


def test_stop_drops_idle_keepalive_connections():
    manager = FakeManager().start()
    session = requests.Session()
    assert session.get(manager.url + "/api/v3/version", timeout=TIMEOUT).ok
    started = time.monotonic()
    manager.stop()
    assert time.monotonic() - started < 2


def test_urllib_client(fm):
    with urllib.request.urlopen(fm.url + "/api/v3/version", timeout=2) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.read())["version"] == "3.9-beta1"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(fm.url + "/nothing/here", timeout=2)
    assert exc.value.code == 404


# --------------------------------------------------------------------------- versions


def test_version_numbers_compare_numerically():
    assert version_tuple("3.5") < version_tuple("3.6") < version_tuple("3.8.5") < version_tuple("3.9-beta1")
    assert version_tuple("3.10") > version_tuple("3.9")


def test_version_endpoint(vfm):
    body = get(vfm, "/api/v3/version").json()
    assert set(body) == {"version", "shortversion", "name", "git"}
    assert body["shortversion"] == vfm.version
    assert_schema(vfm, body, "FlamencoVersion")


def test_openapi3_json_is_the_versions_spec(vfm):
    spec = get(vfm, "/api/v3/openapi3.json").json()
    ops = {op["operationId"] for item in spec["paths"].values() for op in item.values()
           if isinstance(op, dict) and "operationId" in op}
    old = vfm.version == "3.5"
    # capitalised, as the real Manager serves its embedded spec
    assert ("QueryJobs" in ops) == old
    assert ("FetchJobs" in ops) == (not old)
    assert ("SetJobTag" in ops) == vfm.at_least("3.8")
    assert "SubmitJob" in ops and "submitJob" not in ops


def test_unknown_path_is_404(fm):
    resp = get(fm, "/api/v3/does-not-exist")
    assert resp.status_code == 404 and resp.json() == {"message": "Not Found"}
    assert get(fm, "/job-files/nope.txt").json() == {"message": "Not Found"}


def test_job_listing_by_version(vfm):
    vfm.state.add_job("one")
    listing, query = get(vfm, "/api/v3/jobs"), post(vfm, "/api/v3/jobs/query", {})
    if vfm.version == "3.5":
        assert listing.status_code == 400 and listing.json() == {"message": "method not allowed"}   # as a real 3.5
        assert query.status_code == 200 and [j["name"] for j in query.json()["jobs"]] == ["one"]
    else:
        assert listing.status_code == 200 and [j["name"] for j in listing.json()["jobs"]] == ["one"]
        assert query.status_code == (400 if version_tuple(vfm.version) < version_tuple("3.9") else 404)   # "method not allowed", as real ones
    # Submitting is POST /api/v3/jobs everywhere.
    assert post(vfm, "/api/v3/jobs", sbr_job()).status_code == 200


def test_query_jobs_35_filters():
    with FakeManager("3.5") as manager:
        st = manager.state
        st.add_job("a", status="queued", priority=10, metadata={"project": "Spring", "user.name": "ann"})
        st.add_job("b", status="active", priority=90, metadata={"project": "Sprite", "user.name": "bob"})
        st.add_job("c", status="completed", priority=50, metadata={"project": "Other"})

        def names(q):
            resp = post(manager, "/api/v3/jobs/query", q)
            assert resp.status_code == 200, resp.text
            return [j["name"] for j in resp.json()["jobs"]]

        assert names({}) == ["a", "b", "c"]
        assert names({"status_in": ["queued", "active"]}) == ["a", "b"]
        assert names({"order_by": ["-priority"]}) == ["b", "c", "a"]
        assert names({"order_by": ["priority"], "offset": 1, "limit": 1}) == ["c"]
        assert names({"metadata": {"project": "Spring"}}) == ["a"]
        assert names({"metadata": {"project": "spr%"}}) == ["a", "b"]  # LIKE, case-insensitive
        # Dotted keys are JSON paths to SQLite: they never match flat metadata keys.
        assert names({"metadata": {"user.name": "ann"}}) == []
        bad = post(manager, "/api/v3/jobs/query", {"status_in": ["sleeping"]})
        assert is_validation_error(bad)


def test_steps_fields_only_from_38(vfm):
    job = post(vfm, "/api/v3/jobs", sbr_job()).json()
    tasks = get(vfm, f"/api/v3/jobs/{job['id']}/tasks").json()["tasks"]
    task = get(vfm, f"/api/v3/tasks/{tasks[0]['id']}").json()
    has_steps = vfm.at_least("3.8")
    for obj in (job, tasks[0], task):
        assert ("steps_completed" in obj) == has_steps
        assert ("steps_total" in obj) == has_steps
    assert ("total_step_count" in task["commands"][0]) == has_steps
    assert ("index_in_job" in task) == vfm.at_least("3.6")
    if has_steps:
        assert job["steps_total"] == sum(t["steps_total"] for t in tasks)


def test_task_worker_field_by_version(vfm):
    job = vfm.state.add_job("j", tasks=2)
    t1, t2 = vfm.state.job_tasks(job["id"])
    worker = vfm.state.add_worker("w1")
    vfm.state.assign_task(t2["id"], worker["id"])
    unassigned = get(vfm, f"/api/v3/tasks/{t1['id']}").json()
    assigned = get(vfm, f"/api/v3/tasks/{t2['id']}").json()
    if vfm.at_least("3.7"):
        assert unassigned["worker"]["id"] == ""
    else:
        assert "worker" not in unassigned
    assert assigned["worker"] == {"id": worker["id"], "name": "w1", "address": worker["ip_address"]}
    summaries = get(vfm, f"/api/v3/jobs/{job['id']}/tasks").json()["tasks"]
    assert all(("worker" in s) == vfm.at_least("3.8") for s in summaries)


def test_pause_requested_by_version(vfm):
    job = vfm.state.add_job("j", tasks=3)
    resp = post(vfm, f"/api/v3/jobs/{job['id']}/setstatus", {"status": "pause-requested", "reason": "test"})
    if not vfm.at_least("3.6"):
        assert is_validation_error(resp)
        assert vfm.state.get_job(job["id"])["status"] == "queued"
        return
    assert resp.status_code == 204
    assert get(vfm, f"/api/v3/jobs/{job['id']}").json()["status"] == "paused"
    # With a running task, the job waits in pause-requested until that task finishes.
    job2 = vfm.state.add_job("j2", tasks=2)
    running, queued = vfm.state.job_tasks(job2["id"])
    vfm.state.set_task_status(running["id"], "active")
    vfm.state.set_job_status(job2["id"], "active")
    post(vfm, f"/api/v3/jobs/{job2['id']}/setstatus", {"status": "pause-requested", "reason": "test"})
    assert vfm.state.get_job(job2["id"])["status"] == "pause-requested"
    assert vfm.state.get_task(queued["id"])["status"] == "paused"
    vfm.state.change_task_status(running["id"], "completed")
    assert vfm.state.get_job(job2["id"])["status"] == "paused"


def test_initial_status_only_from_36(vfm):
    job = post(vfm, "/api/v3/jobs", sbr_job(initial_status="paused")).json()
    assert job["status"] == ("paused" if vfm.at_least("3.6") else "queued")


def test_spec_selection(monkeypatch):
    from tests.fakemanager import find_spec_file, openapi_dir

    shared = openapi_dir()
    assert find_spec_file("3.8").name == "flamenco-openapi-3.8.5.yaml"  # same major.minor
    assert find_spec_file("3.9").name == "flamenco-openapi-3.9-beta1.yaml"
    monkeypatch.setenv("FLAMENCO_OPENAPI_DIR", str(shared))
    assert FakeManager("3.6").spec_path == shared / "flamenco-openapi-3.6.yaml"


# --------------------------------------------------------------------------- job types, submission


def test_job_types(fm):
    types = get(fm, "/api/v3/jobs/types").json()["job_types"]
    by_name = {t["name"]: t for t in types}
    assert set(by_name) == {"simple-blender-render", "echo-sleep-test"}
    sbr = by_name["simple-blender-render"]
    keys = [s["key"] for s in sbr["settings"]]
    assert keys == ["frames", "chunk_size", "render_output_root", "add_path_components", "render_output_path",
                    "blendfile", "fps", "format", "image_file_extension", "has_previews", "scene"]
    settings = {s["key"]: s for s in sbr["settings"]}
    assert settings["frames"]["evalInfo"]["showLinkButton"] is True
    assert "{timestamp}" in settings["render_output_path"]["eval"]
    assert "last_n_dir_parts" in settings["render_output_path"]["eval"]
    assert [s["key"] for s in by_name["echo-sleep-test"]["settings"]] == [
        "message", "sleep_duration_seconds", "sleep_repeats"]
    assert all(len(t["etag"]) == 40 for t in types)
    one = get(fm, "/api/v3/jobs/type/simple-blender-render").json()
    assert one == sbr
    assert is_handler_error(get(fm, "/api/v3/jobs/type/nope"), 404)
    assert_schema(fm, {"job_types": types}, "AvailableJobTypes")


def test_check_and_submit(fm):
    etag = get(fm, "/api/v3/jobs/type/simple-blender-render").json()["etag"]
    body = sbr_job(type_etag=etag)
    check = post(fm, "/api/v3/jobs/check", body)
    assert check.status_code == 204 and check.content == b""
    assert fm.state.jobs == {}
    resp = post(fm, "/api/v3/jobs", body)
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert_schema(fm, job, "Job")
    assert job["status"] == "queued" and job["metadata"]["user.name"] == "Ann"
    assert "{timestamp}" not in job["settings"]["render_output_path"]
    assert get(fm, f"/api/v3/jobs/{job['id']}").json() == job
    tasks = get(fm, f"/api/v3/jobs/{job['id']}/tasks").json()["tasks"]
    assert [t["name"] for t in tasks] == ["render-1-3", "render-4-6", "render-7-9", "render-10", "preview-video"]
    for t in tasks:
        assert_schema(fm, t, "TaskSummary")
    task = get(fm, f"/api/v3/tasks/{tasks[0]['id']}").json()
    assert_schema(fm, task, "Task")
    args = task["commands"][0]["parameters"]["args"]
    assert args[:2] == ["--scene", "Scene"] and args[-2:] == ["--render-frame", "1..3"]


def test_submit_errors(fm):
    etag = fm.state.job_types["simple-blender-render"]["etag"]
    fm.state.bump_job_type_etag("simple-blender-render")
    for path in ("/api/v3/jobs/check", "/api/v3/jobs"):
        assert is_handler_error(post(fm, path, sbr_job(type_etag=etag)), 412)
    assert is_handler_error(post(fm, "/api/v3/jobs", sbr_job(type="nope")), 400)
    assert is_handler_error(post(fm, "/api/v3/jobs/check", sbr_job(settings=dict(SBR_SETTINGS, format="FFMPEG"))),
                            400)
    missing = sbr_job()
    del missing["submitter_platform"]
    assert is_validation_error(post(fm, "/api/v3/jobs", missing))
    assert is_validation_error(post(fm, "/api/v3/jobs", sbr_job(metadata={"frame": 3})))
    assert is_validation_error(post(fm, "/api/v3/jobs", sbr_job(priority="high")))
    not_json = requests.post(fm.url + "/api/v3/jobs", data=b"{nope", timeout=TIMEOUT,
                             headers={"Content-Type": "application/json"})
    assert is_validation_error(not_json)
    assert fm.state.jobs == {}


def test_two_way_variables_replaced_on_submit(fm):
    settings = dict(SBR_SETTINGS, blendfile="S:\\flamenco\\jobs\\shot.blend", render_output_root="S:\\flamenco\\out")
    job = post(fm, "/api/v3/jobs", sbr_job(settings=settings, submitter_platform="windows")).json()
    assert job["settings"]["blendfile"] == "{storage}\\jobs\\shot.blend"
    assert job["settings"]["render_output_root"] == "{storage}\\out"


def test_echo_sleep_job(fm):
    job = post(fm, "/api/v3/jobs", {"name": "e", "type": "echo-sleep-test", "priority": 50,
                                    "submitter_platform": "linux",
                                    "settings": {"message": "hi", "sleep_duration_seconds": 1,
                                                 "sleep_repeats": 2}}).json()
    tasks = get(fm, f"/api/v3/jobs/{job['id']}/tasks").json()["tasks"]
    assert [t["name"] for t in tasks] == ["echo", "sleep", "sleep"]


@pytest.mark.parametrize("version", ["3.8.5", "3.9-beta1"])
def test_submit_worker_tag(version):
    with FakeManager(version) as manager:
        tag = manager.state.add_tag("GPU", "fast ones")
        ok = post(manager, "/api/v3/jobs", sbr_job(worker_tag=tag["id"]))
        assert ok.json()["worker_tag"] == tag["id"]
        assert is_handler_error(post(manager, "/api/v3/jobs", sbr_job(worker_tag=str(uuid.uuid4()))),
                                500)
        bad = post(manager, "/api/v3/jobs", sbr_job(worker_tag="GPU"))
        if version == "3.8.5":
            assert is_validation_error(bad)  # format: uuid in the spec
        else:
            assert is_handler_error(bad, 500)


# --------------------------------------------------------------------------- job management


def test_setstatus_cancel_and_requeue(fm):
    job = fm.state.add_job("j", tasks=3)
    url = f"/api/v3/jobs/{job['id']}/setstatus"
    assert post(fm, url, {"status": "cancel-requested", "reason": "user"}).status_code == 204
    assert get(fm, f"/api/v3/jobs/{job['id']}").json()["status"] == "canceled"
    assert {t["status"] for t in fm.state.job_tasks(job["id"])} == {"canceled"}
    assert post(fm, url, {"status": "requeueing", "reason": "again"}).status_code == 204
    assert fm.state.get_job(job["id"])["status"] == "queued"
    assert {t["status"] for t in fm.state.job_tasks(job["id"])} == {"queued"}
    assert is_validation_error(post(fm, url, {"status": "canceled"}))  # reason is required
    assert is_validation_error(post(fm, url, {"status": "bogus", "reason": "x"}))


def test_state_machine_error_is_500(fm):
    job = fm.state.add_job("j")
    fm.state.status_change_error = "database is locked"
    resp = post(fm, f"/api/v3/jobs/{job['id']}/setstatus", {"status": "cancel-requested", "reason": "x"})
    assert is_handler_error(resp, 500)
    task = fm.state.job_tasks(job["id"])[0]
    assert is_handler_error(post(fm, f"/api/v3/tasks/{task['id']}/setstatus",
                                 {"status": "canceled", "reason": "x"}), 500)


def test_setpriority(fm):
    job = fm.state.add_job("j")
    url = f"/api/v3/jobs/{job['id']}/setpriority"
    assert post(fm, url, {"priority": 100}).status_code == 204
    assert fm.state.get_job(job["id"])["priority"] == 100
    assert is_validation_error(post(fm, url, {"priority": 101}))
    assert is_validation_error(post(fm, url, {"priority": -1}))
    assert is_validation_error(post(fm, url, {}))


def test_delete_job(fm):
    job = fm.state.add_job("j")
    assert requests.delete(fm.url + f"/api/v3/jobs/{job['id']}", timeout=TIMEOUT).status_code == 204
    assert is_handler_error(get(fm, f"/api/v3/jobs/{job['id']}"), 404)
    fm.state.delete_delay = 60
    job = fm.state.add_job("k")
    requests.delete(fm.url + f"/api/v3/jobs/{job['id']}", timeout=TIMEOUT)
    assert "delete_requested_at" in get(fm, f"/api/v3/jobs/{job['id']}").json()


def test_bad_and_unknown_ids():
    with FakeManager("3.5") as old, FakeManager("3.9-beta1") as new:
        for m in (old, new):   # a real 3.5 does not enforce its spec's `format: uuid` either
            assert is_handler_error(get(m, "/api/v3/jobs/not-a-uuid"), 400)
        missing = "0f2a5d55-4bd3-4b6c-9b56-6f54e61c1e5b"
        for m in (old, new):
            assert is_handler_error(get(m, f"/api/v3/jobs/{missing}"), 404)
            assert is_handler_error(get(m, f"/api/v3/tasks/{missing}"), 404)


def test_last_rendered(fm):
    job = fm.state.add_job("j")
    assert get(fm, f"/api/v3/jobs/{job['id']}/last-rendered").status_code == 204
    assert get(fm, "/api/v3/jobs/last-rendered").status_code == 204
    fm.state.set_last_rendered(job["id"])
    info = get(fm, f"/api/v3/jobs/{job['id']}/last-rendered").json()
    assert_schema(fm, info, "JobLastRenderedImageInfo")
    assert info["base"].startswith("/job-files/") and len(info["suffixes"]) == 3
    for suffix in info["suffixes"]:
        img = get(fm, info["base"] + "/" + suffix)
        assert img.headers["Content-Type"] == "image/jpeg"
        assert img.content[:2] == b"\xff\xd8" and img.content[-2:] == b"\xff\xd9"
    assert get(fm, "/api/v3/jobs/last-rendered").json() == info
    assert TINY_JPEG[:2] == b"\xff\xd8"


# --------------------------------------------------------------------------- logs


def test_logtail(fm):
    job = fm.state.add_job("j", tasks=1)
    task = fm.state.job_tasks(job["id"])[0]
    assert get(fm, f"/api/v3/tasks/{task['id']}/logtail").status_code == 204
    assert get(fm, f"/api/v3/tasks/{task['id']}/log").status_code == 204
    fm.state.append_log_lines(task["id"], ["first line", "second line"])
    small = get(fm, f"/api/v3/tasks/{task['id']}/logtail")
    assert small.status_code == 200 and small.headers["Content-Type"].startswith("text/plain")
    assert small.content == b"first line\nsecond line\n"
    fm.state.append_log_lines(task["id"], [f"line {i:04d} " + "x" * 50 for i in range(200)])
    tail = get(fm, f"/api/v3/tasks/{task['id']}/logtail").content
    full = fm.state.task_log(task["id"])
    assert len(tail) <= 2048 and full.endswith(tail)
    assert full[len(full) - len(tail) - 1:len(full) - len(tail)] == b"\n"  # starts at a line boundary
    assert tail.startswith(b"line ")


def test_log_info_and_range_reads(fm):
    job = fm.state.add_job("j", tasks=1)
    task = fm.state.job_tasks(job["id"])[0]
    fm.state.append_log(task["id"], "hello\nworld\n")
    info = get(fm, f"/api/v3/tasks/{task['id']}/log").json()
    assert_schema(fm, info, "TaskLogInfo")
    assert info["task_id"] == task["id"] and info["job_id"] == job["id"] and info["size"] == 12
    assert info["url"].startswith("/job-files/") and info["url"].endswith(".txt")
    full = get(fm, info["url"])
    assert full.status_code == 200 and full.content == b"hello\nworld\n"
    assert full.headers["Accept-Ranges"] == "bytes"
    fm.state.append_log(task["id"], "more\n")
    part = get(fm, info["url"], headers={"Range": f"bytes={info['size']}-"})
    assert part.status_code == 206 and part.content == b"more\n"
    assert part.headers["Content-Range"] == "bytes 12-16/17"
    assert get(fm, info["url"], headers={"Range": "bytes=3-4"}).content == b"lo"
    assert get(fm, info["url"], headers={"Range": "bytes=-5"}).content == b"more\n"
    beyond = get(fm, info["url"], headers={"Range": "bytes=17-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */17"


def test_task_setstatus_logs_and_ripples(fm):
    job = fm.state.add_job("j", tasks=2)
    t1, t2 = fm.state.job_tasks(job["id"])
    url = f"/api/v3/tasks/{t1['id']}/setstatus"
    assert post(fm, url, {"status": "completed", "reason": "done"}).status_code == 204
    assert b"task changed status queued -> completed" in fm.state.task_log(t1["id"])
    assert fm.state.get_job(job["id"])["status"] == "active"
    fm.state.change_task_status(t2["id"], "completed")
    assert fm.state.get_job(job["id"])["status"] == "completed"
    assert is_validation_error(post(fm, url, {"status": "nope", "reason": "x"}))


# --------------------------------------------------------------------------- workers, tags, meta


def test_workers(fm):
    w = fm.state.add_worker("render-01", can_restart=False)
    listing = get(fm, "/api/v3/worker-mgt/workers").json()
    assert_schema(fm, listing, "WorkerList")
    assert [x["name"] for x in listing["workers"]] == ["render-01"]
    detail = get(fm, f"/api/v3/worker-mgt/workers/{w['id']}").json()
    assert_schema(fm, detail, "Worker")
    url = f"/api/v3/worker-mgt/workers/{w['id']}/setstatus"
    assert post(fm, url, {"status": "asleep", "is_lazy": False}).status_code == 204
    assert fm.state.get_worker(w["id"])["status"] == "asleep"
    assert is_handler_error(post(fm, url, {"status": "restart", "is_lazy": True}), 412)
    assert is_validation_error(post(fm, url, {"status": "asleep"}))
    fm.state.auto_apply_worker_status = False
    post(fm, url, {"status": "awake", "is_lazy": True})
    assert get(fm, "/api/v3/worker-mgt/workers").json()["workers"][0]["status_change"] == {
        "status": "awake", "is_lazy": True}
    missing = "0f2a5d55-4bd3-4b6c-9b56-6f54e61c1e5b"
    assert is_handler_error(get(fm, f"/api/v3/worker-mgt/workers/{missing}"), 404)


def test_worker_tags(fm):
    fm.state.add_tag("GPU", "fast")
    created = post(fm, "/api/v3/worker-mgt/tags", {"name": "CPU"}).json()
    tags = get(fm, "/api/v3/worker-mgt/tags").json()["tags"]
    assert [t["name"] for t in tags] == ["GPU", "CPU"]
    assert_schema(fm, {"tags": tags}, "WorkerTagList")
    assert get(fm, f"/api/v3/worker-mgt/tag/{created['id']}").json()["name"] == "CPU"


def test_farm_status(fm):
    def status():
        return get(fm, "/api/v3/status").json()["status"]

    assert status() == "inoperative"
    w = fm.state.add_worker()
    assert status() == "idle"
    job = fm.state.add_job("j")
    fm.state.workers[w["id"]]["status"] = "asleep"
    assert status() == "waiting"
    fm.state.set_job_status(job["id"], "active")
    assert status() == "active"


@pytest.mark.parametrize("shaman", [False, True])
def test_storage_configuration_and_variables(shaman):
    with FakeManager(shaman=shaman) as manager:
        suffix = "/jobs" if shaman else ""
        linux = get(manager, "/api/v3/configuration/shared-storage/users/linux").json()
        assert linux == {"location": "/srv/flamenco" + suffix, "audience": "users", "platform": "linux",
                         "shamanEnabled": shaman}
        windows = get(manager, "/api/v3/configuration/shared-storage/users/windows").json()
        assert windows["location"] == "S:\\flamenco" + suffix
        assert is_validation_error(get(manager, "/api/v3/configuration/shared-storage/nobody/linux"))
        variables = get(manager, "/api/v3/configuration/variables/users/darwin").json()
        assert variables["storage"] == {"value": "/Volumes/flamenco", "is_twoway": True}
        assert variables["jobs"]["value"] == "/Volumes/flamenco" + suffix
        assert variables["blenderArgs"]["value"] == "-b -y"
        config = get(manager, "/api/v3/configuration").json()
        assert_schema(manager, config, "ManagerConfiguration")
        assert config["shamanEnabled"] is shaman


def test_shaman():
    import hashlib

    with FakeManager() as off:
        assert is_handler_error(post(off, "/api/v3/shaman/checkout/requirements", {"files": []}), 503)
    with FakeManager(shaman=True) as manager:
        data = b"blend file bytes"
        sha = hashlib.sha256(data).hexdigest()
        spec = {"sha": sha, "size": len(data), "path": "shot.blend"}
        unknown = post(manager, "/api/v3/shaman/checkout/requirements", {"files": [spec]}).json()
        assert unknown == {"files": [dict(spec, status="unknown")]}
        missing = post(manager, "/api/v3/shaman/checkout/create", {"files": [spec], "checkoutPath": "a/b"})
        assert is_handler_error(missing, 500) and "unknown files" in missing.json()["message"]   # as a real one
        url = f"{manager.url}/api/v3/shaman/files/{sha}/{len(data)}"
        assert requests.post(url, data=b"wrong", timeout=TIMEOUT).status_code == 417
        assert requests.post(url, data=data, timeout=TIMEOUT).status_code == 200
        assert requests.post(url, data=data, timeout=TIMEOUT).status_code == 208
        assert requests.get(url, timeout=TIMEOUT).json() == {"status": "stored"}
        done = post(manager, "/api/v3/shaman/checkout/create", {"files": [spec], "checkoutPath": "a/b"})
        assert done.json() == {"checkoutPath": "a/b"}
        checked_out = manager.state.shaman().checkout_root("a/b") / "shot.blend"
        assert checked_out.read_bytes() == data
        again = post(manager, "/api/v3/shaman/checkout/create", {"files": [spec], "checkoutPath": "a/b"})
        assert again.status_code == 200 and again.json()["checkoutPath"].startswith("a/b-")   # made unique
        root = manager.state.shaman().root
    assert not root.exists()   # removed with the Manager


# --------------------------------------------------------------------------- faults


def test_fault_stall_times_out_client(fm):
    fm.fault("GET", "/api/v3/version", "stall")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(fm, "/api/v3/version", timeout=STALL_GUARD)
    assert time.monotonic() - started < 2
    assert get(fm, "/api/v3/status").ok  # other paths unaffected


def test_fault_stall_with_seconds_hangs_up(fm):
    fm.fault("GET", "/api/v3/version", "stall", seconds=0.3)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        get(fm, "/api/v3/version", timeout=(2, 5))
    assert 0.25 <= time.monotonic() - started < 3


def test_fault_slow(fm):
    fm.fault("GET", "/api/v3/version", "slow", seconds=0.4)
    started = time.monotonic()
    resp = get(fm, "/api/v3/version")
    assert time.monotonic() - started >= 0.4
    assert resp.json()["version"] == "3.9-beta1"


def test_fault_status(fm):
    fm.fault("GET", "/api/v3/jobs", "status", times=1)
    resp = get(fm, "/api/v3/jobs")
    assert is_handler_error(resp, 500)
    fm.fault("POST", "/api/v3/jobs", "status", code=400, body={"message": "bad"}, times=1)
    resp = post(fm, "/api/v3/jobs", sbr_job())
    assert resp.status_code == 400 and resp.json() == {"message": "bad"}
    fm.fault("GET", "/api/v3/status", "status", code=502, body="Bad Gateway", headers={"X-Proxy": "1"})
    resp = get(fm, "/api/v3/status")
    assert resp.status_code == 502 and resp.text == "Bad Gateway" and resp.headers["X-Proxy"] == "1"


def test_fault_retry_after(fm):
    fm.fault("GET", "/api/v3/jobs", "retry_after", seconds=2)
    resp = get(fm, "/api/v3/jobs")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert is_handler_error(resp, 503)


def test_fault_invalid_json(fm):
    fm.fault("GET", "/api/v3/jobs", "invalid_json")
    resp = get(fm, "/api/v3/jobs")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(resp.content)


def test_fault_wrong_content_type(fm):
    fm.fault("GET", "/api/v3/version", "wrong_content_type")
    resp = get(fm, "/api/v3/version")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<html>") and resp.text.endswith("</html>")


def test_fault_reset_with_requests(fm):
    fm.state.add_jobs(20)
    fm.fault("GET", "/api/v3/jobs", "reset")
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        get(fm, "/api/v3/jobs")


def test_fault_reset_sends_partial_body(fm):
    fm.fault("GET", "/api/v3/version", "reset", sent=10, abort=False)
    conn = http.client.HTTPConnection("127.0.0.1", fm.port, timeout=2)
    conn.request("GET", "/api/v3/version")
    resp = conn.getresponse()
    length = int(resp.headers["Content-Length"])
    assert resp.status == 200 and length > 10
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    assert len(exc.value.partial) == 10
    conn.close()


def test_fault_reset_aborts_connection(fm):
    fm.fault("GET", "/api/v3/version", "reset", sent=5)
    sock = socket.create_connection(("127.0.0.1", fm.port), timeout=2)
    sock.sendall(b"GET /api/v3/version HTTP/1.1\r\nHost: test\r\n\r\n")
    received, error = b"", None
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except ConnectionResetError as e:
        error = e
    finally:
        sock.close()
    assert error is not None  # RST, not a clean end of stream
    if received:
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"Content-Length:" in head and len(body) <= 5


def test_fault_huge(fm):
    fm.fault("GET", "/api/v3/jobs", "huge")
    resp = get(fm, "/api/v3/jobs", timeout=(2, 30))
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert len(resp.content) >= 50 * 1024 * 1024
    assert json.loads(resp.content)["jobs"] == []


def test_fault_huge_is_streamed_and_sized(fm):
    fm.fault("GET", "/api/v3/jobs", "huge", size=1000)
    resp = get(fm, "/api/v3/jobs")
    assert len(resp.content) == 1000 and json.loads(resp.content)["jobs"] == []


def test_fault_close(fm):
    fm.fault("GET", "/api/v3/version", "close")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(fm, "/api/v3/version")


def test_fault_matching_times_and_clear(fm):
    f = fm.fault("GET", r"/api/v3/jobs/.*", "status", code=500, times=2)
    job = fm.state.add_job("j")
    url = f"/api/v3/jobs/{job['id']}"
    assert [get(fm, url).status_code for _ in range(3)] == [500, 500, 200]
    assert f.hits == 2 and f.exhausted
    fm.fault("POST", ".*", "status", code=418)
    assert get(fm, url).status_code == 200  # method does not match
    assert post(fm, f"{url}/setpriority", {"priority": 3}).status_code == 418
    fm.fault("*", "/api/v3/version", "status", code=599)
    assert get(fm, "/api/v3/version").status_code == 599
    fm.clear_faults()
    assert post(fm, f"{url}/setpriority", {"priority": 3}).status_code == 204
    assert get(fm, "/api/v3/version").status_code == 200


def test_fault_arguments_are_checked(fm):
    with pytest.raises(ValueError):
        fm.fault("GET", ".*", "explode")
    with pytest.raises(TypeError):
        fm.fault("GET", ".*", "slow", second=1)


# --------------------------------------------------------------------------- recording, scale


def test_requests_are_recorded(fm):
    fm.fault("GET", "/api/v3/status", "status", code=503, times=1)
    get(fm, "/api/v3/status")
    post(fm, "/api/v3/jobs/check?dry=1&x=a&x=b", sbr_job(), headers={"User-Agent": "flamenco-panel/test"})
    assert fm.count() == 2
    assert fm.count("POST") == 1 and fm.count(path="/api/v3/status") == 1
    assert fm.count("GET", r"/api/v3/.*") == 1
    first, rec = fm.requests
    assert first.fault == "status" and first.status == 503
    assert rec.method == "POST" and rec.path == "/api/v3/jobs/check"
    assert rec.query == {"dry": ["1"], "x": ["a", "b"]}
    assert rec.headers["user-agent"] == "flamenco-panel/test"
    assert rec.json == sbr_job() and json.loads(rec.body) == sbr_job()
    assert rec.status == 204 and rec.fault is None
    fm.clear_requests()
    assert fm.count() == 0


def test_many_jobs_quickly(fm):
    started = time.monotonic()
    ids = fm.state.add_jobs(10_000, metadata={"user.name": "bench"})
    assert len(ids) == 10_000 and time.monotonic() - started < 5
    resp = get(fm, "/api/v3/jobs", timeout=(2, 30))
    jobs = resp.json()["jobs"]
    assert len(jobs) == 10_000 and jobs[0]["metadata"] == {"user.name": "bench"}


def test_answers_match_spec(vfm):
    st = vfm.state
    job = post(vfm, "/api/v3/jobs", sbr_job()).json()
    assert_schema(vfm, job, "Job")
    task = st.job_tasks(job["id"])[0]
    worker = st.add_worker("w")
    st.assign_task(task["id"], worker["id"])
    st.append_log(task["id"], "log line")
    st.set_last_rendered(job["id"])
    checks = {
        "/api/v3/version": "FlamencoVersion",
        "/api/v3/configuration": "ManagerConfiguration",
        "/api/v3/status": "FarmStatusReport",
        "/api/v3/configuration/shared-storage/users/linux": "SharedStorageLocation",
        "/api/v3/jobs/types": "AvailableJobTypes",
        f"/api/v3/jobs/{job['id']}": "Job",
        f"/api/v3/tasks/{task['id']}": "Task",
        f"/api/v3/tasks/{task['id']}/log": "TaskLogInfo",
        f"/api/v3/jobs/{job['id']}/last-rendered": "JobLastRenderedImageInfo",
        "/api/v3/worker-mgt/workers": "WorkerList",
        f"/api/v3/worker-mgt/workers/{worker['id']}": "Worker",
        "/api/v3/worker-mgt/tags": "WorkerTagList",
    }
    for path, schema in checks.items():
        resp = get(vfm, path)
        assert resp.status_code == 200, (path, resp.text)
        assert_schema(vfm, resp.json(), schema)
    # JobTasksSummary in the spec requires "jobs" (an upstream typo): check the items instead.
    for summary in get(vfm, f"/api/v3/jobs/{job['id']}/tasks").json()["tasks"]:
        assert_schema(vfm, summary, "TaskSummary")
    listing = post(vfm, "/api/v3/jobs/query", {}) if vfm.version == "3.5" else get(vfm, "/api/v3/jobs")
    assert_schema(vfm, listing.json(), "JobsQueryResult")
