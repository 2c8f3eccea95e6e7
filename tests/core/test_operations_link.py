# SPDX-License-Identifier: GPL-3.0-or-later
"""Named operations against the fake Manager, and the helper-process link that runs them."""
from __future__ import annotations

import time

import pytest

from contract import violations
from fakemanager import FakeManager
from flamenco_panel.core import client as client_mod
from flamenco_panel.core import errors, logs, operations
from flamenco_panel.core.client import Connection, ManagerClient
from flamenco_panel.link import protocol
from flamenco_panel.link.channel import Channel


@pytest.fixture
def fm():
    client_mod._CAPABILITIES.clear()
    with FakeManager() as manager:
        yield manager
        assert violations(manager) == []


def client(fm) -> ManagerClient:
    return ManagerClient(Connection(url=fm.url, timeout=2, connect_timeout=2))


def test_refresh_gathers_everything(fm):
    job = fm.state.add_job("mine", metadata={"user.name": "ana"}, tasks=2)
    fm.state.add_worker("w1")
    data = operations.run("refresh", client(fm), {"job_id": job["id"]})
    assert [j["name"] for j in data["jobs"]] == ["mine"] and len(data["tasks"]) == 2
    assert [w["name"] for w in data["workers"]] == ["w1"] and data["version"]["name"]


def test_refresh_detects_again_when_the_manager_changed_version(fm):
    """A Manager upgraded while Blender runs is re-detected by the next refresh, not only by Test Connection."""
    c = client(fm)
    operations.run("refresh", c, {})
    detected = client_mod._CAPABILITIES[c.base]
    assert detected.can_pause and detected.version.version == fm.version
    # what an older Manager at this address would have been detected as
    client_mod._CAPABILITIES[c.base] = client_mod.Capabilities(
        client_mod.Version("3.5", "3.5", "old"), frozenset({"fetchjobs", "queryjobs"}), frozenset({"active"}), True)
    data = operations.run("refresh", c, {})
    assert data["version"]["version"] == fm.version and "pause-requested" in data["capabilities"]["job_statuses"]
    assert client_mod._CAPABILITIES[c.base] == detected
    specs = fm.count("GET", "/api/v3/openapi3.json")
    operations.run("refresh", c, {})
    assert fm.count("GET", "/api/v3/openapi3.json") == specs      # unchanged: the spec is not fetched again


def test_refresh_asks_the_version_once(fm):
    c = client(fm)
    operations.run("refresh", c, {})
    operations.run("refresh", c, {})
    assert fm.count("GET", "/api/v3/version") == 2 and fm.count("GET", "/api/v3/openapi3.json") == 1


def test_a_passing_spec_failure_is_not_remembered(fm):
    """A 500 while fetching the spec gives a version-based guess for now, and the next refresh detects
    again; a Manager without the spec (404) is remembered as such."""
    c = client(fm)
    fm.fault("GET", "/api/v3/openapi3.json", "status", code=500, times=2)   # (refresh asks twice when it fails)
    data = operations.run("refresh", c, {})
    assert data["capabilities"]["spec_known"] is False and c.base not in client_mod._CAPABILITIES
    data = operations.run("refresh", c, {})
    assert data["capabilities"]["spec_known"] is True and client_mod._CAPABILITIES[c.base].spec_known
    with FakeManager() as other:
        other.fault("GET", "/api/v3/openapi3.json", "status", code=404, body={"message": "Not Found"})
        c2 = client(other)
        operations.run("refresh", c2, {})
        assert client_mod._CAPABILITIES[c2.base].spec_known is False
        operations.run("refresh", c2, {})
        assert other.count("GET", "/api/v3/openapi3.json") == 1


def test_refresh_survives_a_deleted_selected_job(fm):
    data = operations.run("refresh", client(fm), {"job_id": "00000000-0000-0000-0000-000000000000"})
    assert data["tasks"] == []


def test_tasks_of_an_unknown_job_is_an_error_not_an_empty_list(fm):
    """A real Manager answers an unknown job's task list with 200 and no tasks (the fake does the same)."""
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(errors.ManagerHTTPError) as caught:
        operations.run("job_tasks", client(fm), {"job_id": unknown})
    assert caught.value.status == 404
    assert fm.count("GET", f"/api/v3/jobs/{unknown}/tasks") == 1
    job = fm.state.add_job("no tasks yet", metadata={"user.name": "ana"}, tasks=0)
    assert operations.run("job_tasks", client(fm), {"job_id": job["id"]})["tasks"] == []


def test_cancel_someone_elses_job_sends_nothing(fm):
    job = fm.state.add_job("theirs", metadata={"user.name": "bob"}, status="active")
    with pytest.raises(errors.ActionNotAllowed):
        operations.run("job_action", client(fm), {"job_id": job["id"], "action": "cancel", "user_name": "ana"})
    assert fm.count("POST", f"/api/v3/jobs/{job['id']}/setstatus") == 0
    assert fm.state.get_job(job["id"])["status"] == "active"


def test_cancel_own_job_rechecks_fresh_status(fm):
    job = fm.state.add_job("mine", metadata={"user.name": "ana"}, status="active")
    result = operations.run("job_action", client(fm), {"job_id": job["id"], "action": "cancel", "user_name": "ana"})
    assert result["status"] == "cancel-requested"
    assert fm.state.get_job(job["id"])["status"] in {"canceled", "cancel-requested"}
    # now canceled: a second cancel is refused on fresh data, nothing sent
    sent = fm.count("POST", f"/api/v3/jobs/{job['id']}/setstatus")
    fm.state.set_job_status(job["id"], "canceled")
    with pytest.raises(errors.ActionNotAllowed):
        operations.run("job_action", client(fm), {"job_id": job["id"], "action": "cancel", "user_name": "ana"})
    assert fm.count("POST", f"/api/v3/jobs/{job['id']}/setstatus") == sent


def test_pause_and_requeue(fm):
    job = fm.state.add_job("mine", metadata={"user.name": "ana"}, status="queued")
    args = {"job_id": job["id"], "user_name": "ana"}
    operations.run("job_action", client(fm), dict(args, action="pause"))
    assert fm.state.get_job(job["id"])["status"] in {"paused", "pause-requested"}
    fm.state.set_job_status(job["id"], "paused")
    operations.run("job_action", client(fm), dict(args, action="requeue"))
    assert fm.state.get_job(job["id"])["status"] in {"queued", "requeueing"}


def test_worker_status(fm):
    w = fm.state.add_worker("w1")
    result = operations.run("worker_status", client(fm), {"worker_id": w["id"], "status": "asleep", "lazy": False})
    assert result["status"] == "asleep" and fm.requests[-1].json == {"status": "asleep", "is_lazy": False}


def test_task_log_tail_and_follow(fm):
    job = fm.state.add_job("mine", tasks=1)
    task_id = fm.state.job_tasks(job["id"])[0]["id"]
    fm.state.append_log(task_id, "line 1\nline 2\n")
    tail = operations.run("task_log", client(fm), {"task_id": task_id})
    assert tail["text"] == "line 1\nline 2\n" and not tail["incremental"]
    first = operations.run("task_log", client(fm), {"task_id": task_id, "follow": True, "offset": 0})
    fm.state.append_log(task_id, "line 3\n")
    fm.state.logs[task_id] += b"partial"   # a line the worker has not finished writing
    second = operations.run("task_log", client(fm), {"task_id": task_id, "follow": True, "offset": first["offset"]})
    assert second["text"] == "line 3\n" and not second["restarted"]   # whole lines only
    assert first["text"] + second["text"] == "line 1\nline 2\nline 3\n"


def test_last_rendered_to_file(fm, tmp_path):
    job = fm.state.add_job("mine")
    fm.state.set_last_rendered(job["id"])
    dest = tmp_path / "user" / "last.jpg"
    result = operations.run("last_rendered", client(fm), {"job_id": job["id"], "dest": str(dest)})
    assert result["path"] == str(dest) and dest.read_bytes()[:2] == b"\xff\xd8"


def test_unknown_operation_and_missing_argument(fm):
    with pytest.raises(errors.ConfigurationError, match="Unknown operation"):
        operations.run("format_disk", client(fm), {})
    with pytest.raises(errors.ConfigurationError, match="job_id"):
        operations.run("job_action", client(fm), {})


# --- logs ---------------------------------------------------------------------------------------

def test_log_cleaning():
    dirty = "ok\x1b[31mred\x1b[0m\x07\ttab\r\nnext\x00\x1b]0;title\x07 end".encode() + b"\xff\xfe"
    assert logs.clean(dirty) == "okred\ttab\nnext end\ufffd\ufffd"
    assert logs.cap("a\nb\nccc\n", 5) == "ccc\n"


def test_text_names_fit_blenders_limit():
    name = logs.text_name("ж" * 80, "render\x1b[1m-1-10", "0123456789abcdef")
    assert len(name.encode()) <= 63 and name.endswith("[01234567]") and "\x1b" not in name


# --- the helper link ----------------------------------------------------------------------------

def wait(channel: Channel, request_id: int, timeout=15.0) -> dict:
    return channel.wait(request_id, timeout)


def test_channel_round_trip_and_restart(fm):
    import sys
    channel = Channel(extra_paths=list(sys.path))
    try:
        conn = Connection(url=fm.url, timeout=2).to_dict()
        assert channel.process is None   # lazy
        rid = channel.send("ping", conn, {})
        begin = time.perf_counter()
        assert channel.drain() == [] or True
        assert time.perf_counter() - begin < 0.05   # drain never blocks
        answer = wait(channel, rid)
        assert answer["type"] == "result" and answer["data"]["version"]["name"]
        bad = wait(channel, channel.send("job_action", conn, {}))
        assert bad["type"] == "error" and bad["error"]["kind"] == "ConfigurationError"
        channel.process.kill()
        channel.process.wait(5)
        rid = channel.send("ping", conn, {})
        assert channel.starts == 2 and wait(channel, rid)["type"] == "result"
    finally:
        process = channel.process
        channel.stop()
    assert process.poll() is not None


def test_channel_fails_pending_when_helper_dies(fm):
    import sys
    fm.fault("GET", "/api/v3/version", "stall")
    channel = Channel(extra_paths=list(sys.path))
    try:
        rid = channel.send("ping", Connection(url=fm.url, timeout=30).to_dict(), {})
        time.sleep(0.3)
        channel.process.kill()
        channel.process.wait(5)
        answer = wait(channel, rid)
        assert answer["type"] == "error" and "helper process stopped" in answer["error"]["message"]
    finally:
        channel.stop()


def test_protocol_line_buffer():
    buffer = protocol.LineBuffer()
    line = protocol.encode(protocol.result(1, {"x": "ü"}))
    assert buffer.feed(line[:5]) == [] and buffer.feed(line[5:]) == [line.strip()]
    assert protocol.decode(b"not json") is None and protocol.decode(b"[1]") is None


def test_refresh_sends_only_what_changed_since_blenders_rows(fm):
    ids = fm.state.add_jobs(50, metadata={"user.name": "ana"})
    c = client(fm)
    first = operations.run("refresh", c, {"compact": True})
    assert len(first["job_rows"]) == 50 and "job_rows_changed" not in first
    same = operations.run("refresh", c, {"compact": True, "rows_digest": first["job_rows_digest"]})
    assert "job_rows" not in same and "job_rows_changed" not in same
    fm.state.set_job_status(ids[7], "completed")
    fm.state.add_job("newest", metadata={"user.name": "ana"})
    delta = operations.run("refresh", c, {"compact": True, "rows_digest": same["job_rows_digest"]})
    assert "job_rows" not in delta and delta["job_rows_count"] == 51
    changed = dict((i, row) for i, row in delta["job_rows_changed"])
    assert sorted(changed) == [7, 50] and changed[7][2] == "completed" and changed[50][1] == "newest"
    unknown = operations.run("refresh", c, {"compact": True, "rows_digest": "not-what-the-helper-sent"})
    assert len(unknown["job_rows"]) == 51   # out of step: everything


def test_request_lost_with_a_dead_helper_is_answered_at_next_drain(fm):
    import sys
    fm.fault("GET", "/api/v3/version", "stall", times=1)
    channel = Channel(extra_paths=list(sys.path))
    try:
        conn = Connection(url=fm.url, timeout=30).to_dict()
        lost = channel.send("ping", conn, {})
        time.sleep(0.3)
        channel.process.kill()
        channel.process.wait(5)
        fresh = channel.send("ping", conn, {})        # restarts without a drain in between
        assert channel.wait(lost, 5)["type"] == "error"
        assert channel.wait(fresh, 15)["type"] == "result"
    finally:
        channel.stop()
