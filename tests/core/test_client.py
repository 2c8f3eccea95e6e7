# SPDX-License-Identifier: GPL-3.0-or-later
"""ManagerClient against the fault-injecting fake Manager on 127.0.0.1: every operation, every fault."""
from __future__ import annotations

import time

import pytest

from contract import violations
from fakemanager import FakeManager
from flamenco_panel.core import client as client_mod
from flamenco_panel.core import errors
from flamenco_panel.core.client import Connection, ManagerClient

TIMEOUT = 1.0


@pytest.fixture(autouse=True)
def fresh_capabilities():
    client_mod._CAPABILITIES.clear()
    yield
    client_mod._CAPABILITIES.clear()


@pytest.fixture(params=["3.9-beta1"])
def fm(request):
    with FakeManager(request.param) as manager:
        yield manager
        assert violations(manager) == []


def make_client(manager, **kw) -> ManagerClient:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("connect_timeout", TIMEOUT)
    return ManagerClient(Connection(url=manager.url, **kw))


def mine(fm, name="mine", **kw):
    return fm.state.add_job(name, metadata={"user.name": "artist"}, **kw)


# --- every operation ---------------------------------------------------------------------------

def test_version_and_capabilities(fm):
    c = make_client(fm)
    version = c.version()
    assert version.shortversion.startswith("3.9") and version.numbers == (3, 9)
    caps = c.capabilities()
    assert caps.spec_known and caps.has("fetchJobs") and caps.can_pause and caps.lists_jobs_with_get
    assert c.capabilities() is caps   # cached per URL
    assert fm.count("GET", "/api/v3/openapi3.json") == 1


def test_status_configuration_storage_variables(fm):
    c = make_client(fm)
    assert c.farm_status() in {"active", "idle", "waiting", "asleep", "inoperative", "unknown", "starting"}
    assert isinstance(c.configuration(), dict)
    storage = c.shared_storage("linux")
    assert storage.location == "/srv/flamenco" and storage.platform == "linux" and not storage.shaman_enabled
    assert c.shared_storage("windows").location == "S:\\flamenco"
    variables = c.variables("linux")
    assert variables["storage"].is_twoway and variables["storage"].value == "/srv/flamenco"
    with pytest.raises(errors.ConfigurationError):
        c.shared_storage("amiga")


def test_job_types_and_one_type(fm):
    c = make_client(fm)
    names = {t["name"] for t in c.job_types()}
    assert {"simple-blender-render", "echo-sleep-test"} <= names
    one = c.job_type("echo-sleep-test")
    assert one["name"] == "echo-sleep-test" and one.get("etag")


def _echo_job(etag: str, name="echo") -> dict:
    return {"name": name, "type": "echo-sleep-test", "priority": 50, "submitter_platform": "linux",
            "type_etag": etag, "metadata": {"user.name": "artist"},
            "settings": {"message": "hi", "sleep_duration_seconds": 1, "sleep_repeats": 1}}


def test_check_and_submit(fm):
    c = make_client(fm)
    etag = c.job_type("echo-sleep-test")["etag"]
    c.check_job(_echo_job(etag))
    job = c.submit_job(_echo_job(etag))
    assert job.id and job.name == "echo" and job.status in {"queued", "under-construction"}
    assert job.metadata["user.name"] == "artist"
    assert fm.count("POST", "/api/v3/jobs") == 1


def test_check_with_stale_etag_is_job_type_stale(fm):
    c = make_client(fm)
    etag = c.job_type("echo-sleep-test")["etag"]
    fm.state.bump_job_type_etag("echo-sleep-test")
    with pytest.raises(errors.JobTypeStale) as info:
        c.check_job(_echo_job(etag))
    assert info.value.status == 412


def test_jobs_job_tasks_task(fm):
    job = mine(fm, tasks=2)
    c = make_client(fm)
    jobs = c.jobs()
    assert [j.id for j in jobs] == [job["id"]]
    assert c.job(job["id"]).name == "mine"
    tasks = c.job_tasks(job["id"])
    assert len(tasks) == 2 and all(t.worker_id == "" for t in tasks)
    task = c.task(tasks[0].id)
    assert task.job_id == job["id"] and task.name == tasks[0].name


def test_job_status_priority_delete(fm):
    job = mine(fm, status="active")
    c = make_client(fm)
    c.set_job_status(job["id"], "cancel-requested", "test")
    assert c.job(job["id"]).status in {"cancel-requested", "canceled"}
    c.set_job_priority(job["id"], 80)
    assert c.job(job["id"]).priority == 80
    with pytest.raises(errors.ConfigurationError):
        c.set_job_priority(job["id"], 101)
    c.delete_job(job["id"])
    assert fm.count("DELETE", f"/api/v3/jobs/{job['id']}") == 1


def test_task_status(fm):
    job = mine(fm, status="active", tasks=1)
    c = make_client(fm)
    task = c.job_tasks(job["id"])[0]
    c.set_task_status(task.id, "canceled", "test")
    assert c.task(task.id).status == "canceled"


def test_log_tail_info_and_incremental_reads(fm):
    job = mine(fm, tasks=1)
    c = make_client(fm)
    task_id = c.job_tasks(job["id"])[0].id
    assert c.task_log_tail(task_id) == ""          # 204: no log yet
    assert c.task_log_info(task_id) is None
    fm.state.append_log(task_id, "first line\n" + "x" * 3000 + "\nlast line\n")
    tail = c.task_log_tail(task_id)
    assert tail.endswith("last line\n") and len(tail.encode()) <= 2048
    info = c.task_log_info(task_id)
    assert info.size > 3000 and info.url.startswith("/")
    data, start, end = c.read_task_log(task_id, 0)
    assert data.startswith(b"first line") and start == 0 and end == info.size
    fm.state.append_log(task_id, "new line\n")
    data, start, end2 = c.read_task_log(task_id, end)
    assert data == b"new line\n" and start == end and end2 == end + len(b"new line\n")
    ranged = [r for r in fm.requests if r.path.startswith("/job-files/")]
    assert ranged[-1].headers.get("Range") == f"bytes={end}-"
    assert c.read_task_log(task_id, end2) == (b"", end2, end2)   # nothing new: no file request
    assert len([r for r in fm.requests if r.path.startswith("/job-files/")]) == len(ranged)


def test_log_that_shrank_restarts(fm):
    job = mine(fm, tasks=1)
    c = make_client(fm)
    task_id = c.job_tasks(job["id"])[0].id
    fm.state.set_log(task_id, "a" * 100 + "\n")
    _, _, end = c.read_task_log(task_id, 0)
    fm.state.set_log(task_id, "requeued\n")
    data, start, _ = c.read_task_log(task_id, end)
    assert start == 0 and data == b"requeued\n"


def test_workers_worker_status_tags(fm):
    tag = fm.state.add_tag("GPU", "GPU workers")
    w = fm.state.add_worker("w1", can_restart=True, tags=[tag["id"]])
    c = make_client(fm)
    workers = c.workers()
    assert [x.name for x in workers] == ["w1"] and workers[0].status == "awake"
    detail = c.worker(w["id"])
    assert detail.platform == "linux" and detail.tags == ["GPU"]
    c.set_worker_status(w["id"], "asleep", True)
    assert fm.requests[-1].json == {"status": "asleep", "is_lazy": True}
    assert [t.name for t in c.worker_tags()] == ["GPU"]


def test_last_rendered(fm):
    job = mine(fm)
    c = make_client(fm)
    assert c.last_rendered(job["id"]) is None
    fm.state.set_last_rendered(job["id"])
    info = c.last_rendered(job["id"])
    assert info.suffixes and info.base.startswith("/")
    image = c.last_rendered_image(info)
    assert image[:2] == b"\xff\xd8"   # JPEG


def test_ids_cannot_walk_the_api(fm):
    c = make_client(fm)
    with pytest.raises(errors.ManagerHTTPError):
        c.job("../../version")
    assert all("/version" != r.path for r in fm.requests[-1:])


# --- Manager 3.5 ------------------------------------------------------------------------------

def test_manager_35_lists_with_query_and_cannot_pause():
    with FakeManager("3.5") as fm:
        mine(fm, "old")
        c = make_client(fm)
        caps = c.capabilities()
        assert not caps.can_pause and not caps.lists_jobs_with_get and not caps.has_initial_status
        assert [j.name for j in c.jobs()] == ["old"]
        assert fm.count("POST", "/api/v3/jobs/query") == 1 and fm.count("GET", "/api/v3/jobs") == 0
        assert c.jobs()[0].steps_total == -1 and c.jobs()[0].progress is None
        assert violations(fm) == []


def test_falls_back_when_get_jobs_is_missing_without_spec():
    with FakeManager("3.5") as fm:
        mine(fm, "old")
        fm.fault("GET", "/api/v3/openapi3.json", "status", code=404, body={"message": "Not Found"})
        c = make_client(fm)
        # Unknown spec, version 3.5 → query. Pretend the version were unknown: GET, which a real 3.5 answers
        # with 400 "method not allowed", then the query.
        c.capabilities()
        client_mod._CAPABILITIES[c.base] = client_mod.Capabilities(client_mod.Version(version="dev"))
        assert [j.name for j in c.jobs()] == ["old"]
        assert fm.count("GET", "/api/v3/jobs") == 1 and fm.count("POST", "/api/v3/jobs/query") == 1


@pytest.mark.parametrize("version", ["3.5", "3.7", "3.9-beta1"])
def test_progress_per_version(version):
    with FakeManager(version) as fm:
        job = mine(fm, tasks=2, status="active")
        c = make_client(fm)
        tasks = c.job_tasks(job["id"])
        fm.state.set_task_status(tasks[0].id, "completed")
        parsed = c.jobs()[0]
        if version == "3.9-beta1":
            assert parsed.steps_total >= 0
        else:
            assert parsed.steps_total == -1 and parsed.progress is None
        from flamenco_panel.core.models import progress_from_tasks
        assert progress_from_tasks(c.job_tasks(job["id"])) == 0.5


# --- faults -----------------------------------------------------------------------------------

def timed(fn):
    begin = time.monotonic()
    try:
        fn()
    except errors.FlamencoError as ex:
        return ex, time.monotonic() - begin
    return None, time.monotonic() - begin


def test_stall_times_out_within_the_timeout(fm):
    fm.fault("GET", "/api/v3/version", "stall")
    ex, elapsed = timed(make_client(fm).version)
    assert isinstance(ex, errors.ManagerTimeout) and "did not answer" in ex.message
    assert elapsed < TIMEOUT + 1.0
    assert fm.count("GET", "/api/v3/version") == 1   # a timeout is not retried


def test_slow_within_timeout_succeeds_beyond_fails(fm):
    fm.fault("GET", "/api/v3/status", "slow", seconds=0.3, times=1)
    assert make_client(fm).farm_status()
    fm.fault("GET", "/api/v3/status", "slow", seconds=TIMEOUT + 1)
    ex, _ = timed(make_client(fm).farm_status)
    assert isinstance(ex, errors.ManagerTimeout)


@pytest.mark.parametrize("body,expected", [({"code": 500, "message": "database on fire"}, "database on fire"),
                                           ({"message": "bad request shape"}, "bad request shape")])
def test_http_error_message_from_either_body_shape(fm, body, expected):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "status", code=500, body=body)
    ex, _ = timed(make_client(fm).workers)
    assert isinstance(ex, errors.ManagerHTTPError) and ex.status == 500 and expected in ex.message


def test_503_retry_after_is_retried_for_gets(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "retry_after", seconds=0.2, times=1)
    assert make_client(fm).workers() == []
    assert fm.count("GET", "/api/v3/worker-mgt/workers") == 2


def test_503_is_not_retried_for_posts(fm):
    job = mine(fm, status="active")
    fm.fault("POST", r"/api/v3/jobs/.*/setstatus", "retry_after", seconds=0.1)
    ex, _ = timed(lambda: make_client(fm).set_job_status(job["id"], "cancel-requested", "x"))
    assert isinstance(ex, errors.ManagerHTTPError) and ex.status == 503
    assert fm.count("POST", f"/api/v3/jobs/{job['id']}/setstatus") == 1


def test_503_retries_are_bounded(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "retry_after", seconds=0.05)
    ex, _ = timed(make_client(fm).workers)
    assert isinstance(ex, errors.ManagerHTTPError) and ex.status == 503
    assert fm.count("GET", "/api/v3/worker-mgt/workers") == 1 + client_mod.GET_RETRIES


def test_invalid_json(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "invalid_json")
    ex, _ = timed(make_client(fm).workers)
    assert isinstance(ex, errors.MalformedResponse) and "invalid JSON" in ex.message


def test_wrong_content_type(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "wrong_content_type")
    ex, _ = timed(make_client(fm).workers)
    assert isinstance(ex, errors.MalformedResponse) and "text/html" in ex.message


def test_not_a_manager(fm):
    fm.fault("GET", "/api/v3/version", "wrong_content_type")
    ex, _ = timed(make_client(fm).version)
    assert isinstance(ex, errors.NotAManager)
    fm.clear_faults()
    fm.fault("GET", "/api/v3/version", "status", code=404, body={"message": "Not Found"})
    ex, _ = timed(make_client(fm).capabilities)
    assert isinstance(ex, errors.NotAManager)


def test_reset_mid_body_get_is_retried_then_fails(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "reset")
    ex, elapsed = timed(make_client(fm).workers)
    assert isinstance(ex, errors.ManagerUnreachable)
    assert fm.count("GET", "/api/v3/worker-mgt/workers") == 1 + client_mod.GET_RETRIES
    assert elapsed < 5


def test_reset_on_submit_is_never_retried(fm):
    c = make_client(fm)
    etag = c.job_type("echo-sleep-test")["etag"]
    fm.fault("POST", "/api/v3/jobs", "reset")
    ex, _ = timed(lambda: c.submit_job(_echo_job(etag)))
    assert isinstance(ex, errors.ManagerUnreachable)
    assert fm.count("POST", "/api/v3/jobs") == 1


def test_connection_closed_without_answer(fm):
    fm.fault("GET", "/api/v3/status", "close")
    ex, _ = timed(make_client(fm).farm_status)
    assert isinstance(ex, errors.ManagerUnreachable)


def test_50_mb_body_is_refused_without_loading_it_all(fm):
    fm.fault("GET", "/api/v3/worker-mgt/workers", "huge", size=50 * 1024 * 1024)
    ex, elapsed = timed(make_client(fm, timeout=10).workers)
    assert isinstance(ex, errors.MalformedResponse) and "too large" in ex.message
    assert elapsed < 10


def test_unreachable_manager():
    c = ManagerClient(Connection(url="http://127.0.0.1:9", timeout=TIMEOUT, connect_timeout=TIMEOUT))
    ex, elapsed = timed(c.version)
    assert isinstance(ex, errors.ManagerUnreachable) and "Cannot connect" in ex.message
    assert elapsed < 3


def test_bad_urls_are_configuration_errors():
    for url in ("", "localhost:8080", "ftp://x", "http://"):
        with pytest.raises(errors.ConfigurationError):
            ManagerClient(Connection(url=url))


# --- connection options -----------------------------------------------------------------------

def test_extra_header_is_sent_and_never_shown(fm):
    secret = "Bearer s3cr3t-t0ken"
    c = make_client(fm, header_name="Authorization", header_value=secret)
    c.version()
    assert fm.requests[-1].headers.get("Authorization") == secret
    assert secret not in repr(c) and secret not in repr(c.connection)
    fm.fault("GET", "/api/v3/status", "status", code=500, body={"message": "nope"})
    ex, _ = timed(c.farm_status)
    assert secret not in str(ex) and secret not in repr(ex)


def test_ignore_proxy(fm, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert make_client(fm, ignore_proxy=True).version()
    ex, _ = timed(make_client(fm, ignore_proxy=False).version)
    assert isinstance(ex, errors.ManagerUnreachable)


def test_header_that_http_cannot_carry_is_refused_without_echo(fm):
    with pytest.raises(errors.ConfigurationError) as info:
        make_client(fm, header_name="Authorization", header_value="Bearer s€cret")
    assert "s€cret" not in info.value.message and "€" not in info.value.message


def test_dripping_answer_ends_at_the_overall_deadline():
    """A Manager that sends a byte now and then, never long enough apart for the read timeout."""
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def drip():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b" ")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        c = ManagerClient(Connection(url=f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5,
                                     connect_timeout=0.5))
        ex, elapsed = timed(c.workers)
        assert isinstance(ex, errors.ManagerTimeout) and "too slowly" in ex.message
        assert elapsed < 0.5 + 0.5 * 3 + 1.0
    finally:
        stop.set()
        server.close()
