# SPDX-License-Identifier: GPL-3.0-or-later
"""The fake Manager answers like the real one: the same requests to both, the same status codes, content types
and JSON shapes (keys and value types, recursively), for reads, submissions, status changes and errors.

Most tests run against the fake, so its fidelity is what their worth rests on; this is where a real Manager
checks it. Skips, saying why, when the real binaries are not installed (tests/realfarm.py).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

import realfarm
from fakemanager import FakeManager

UNKNOWN = "00000000-0000-4000-8000-000000000000"
JOB = {"name": "fidelity", "type": "echo-sleep-test", "priority": 50, "submitter_platform": "linux",
       "settings": {"message": "hi", "sleep_duration_seconds": 1, "sleep_repeats": 1}, "metadata": {"user.name": "x"}}

# (label, method, path, body); {job} and {task} are each Manager's own ids
READS = [
    ("version", "GET", "/api/v3/version", None),
    ("configuration", "GET", "/api/v3/configuration", None),
    ("shared storage", "GET", "/api/v3/configuration/shared-storage/users/linux", None),
    ("farm status", "GET", "/api/v3/status", None),
    ("job types", "GET", "/api/v3/jobs/types", None),
    ("one job type", "GET", "/api/v3/jobs/type/echo-sleep-test", None),
    ("unknown job type", "GET", "/api/v3/jobs/type/nope", None),
    ("check", "POST", "/api/v3/jobs/check", JOB),
    ("check, stale etag", "POST", "/api/v3/jobs/check", dict(JOB, type_etag="stale")),
    ("check, settings missing", "POST", "/api/v3/jobs/check", dict(JOB, settings={})),
    ("check, unknown type", "POST", "/api/v3/jobs/check", dict(JOB, type="nope")),
    ("submit, bad body", "POST", "/api/v3/jobs", {"name": "x"}),
    ("unknown job", "GET", f"/api/v3/jobs/{UNKNOWN}", None),
    ("not a job id", "GET", "/api/v3/jobs/not-a-uuid", None),
    ("tasks of an unknown job", "GET", f"/api/v3/jobs/{UNKNOWN}/tasks", None),
    ("unknown task", "GET", f"/api/v3/tasks/{UNKNOWN}", None),
    ("unknown task's log tail", "GET", f"/api/v3/tasks/{UNKNOWN}/logtail", None),
    ("workers", "GET", "/api/v3/worker-mgt/workers", None),
    ("worker tags", "GET", "/api/v3/worker-mgt/tags", None),
    ("unknown worker", "GET", f"/api/v3/worker-mgt/workers/{UNKNOWN}", None),
    ("unknown method", "PUT", "/api/v3/jobs", None),
    ("unknown path", "GET", "/api/v3/nope", None),
]
AFTER_SUBMIT = [
    ("job list", "GET", "/api/v3/jobs", None),
    ("job query", "POST", "/api/v3/jobs/query", {}),
    ("job", "GET", "/api/v3/jobs/{job}", None),
    ("job's tasks", "GET", "/api/v3/jobs/{job}/tasks", None),
    ("task", "GET", "/api/v3/tasks/{task}", None),
    ("task log tail, none yet", "GET", "/api/v3/tasks/{task}/logtail", None),
    ("task log info, none yet", "GET", "/api/v3/tasks/{task}/log", None),
    ("last rendered, none yet", "GET", "/api/v3/jobs/{job}/last-rendered", None),
    ("blocklist", "GET", "/api/v3/jobs/{job}/blocklist", None),
    ("status, not allowed", "POST", "/api/v3/jobs/{job}/setstatus", {"status": "completed", "reason": "x"}),
    ("status, unknown", "POST", "/api/v3/jobs/{job}/setstatus", {"status": "weird", "reason": "x"}),
    ("priority", "POST", "/api/v3/jobs/{job}/setpriority", {"priority": 60}),
    ("priority out of range", "POST", "/api/v3/jobs/{job}/setpriority", {"priority": 600}),
    ("task status, unknown", "POST", "/api/v3/tasks/{task}/setstatus", {"status": "weird", "reason": "x"}),
    ("task status", "POST", "/api/v3/tasks/{task}/setstatus", {"status": "canceled", "reason": "x"}),
    ("worker", "GET", "/api/v3/worker-mgt/workers/{worker}", None),
    ("worker status, unknown", "POST", "/api/v3/worker-mgt/workers/{worker}/setstatus",
     {"status": "dancing", "is_lazy": True}),
    ("worker status", "POST", "/api/v3/worker-mgt/workers/{worker}/setstatus", {"status": "offline", "is_lazy": True}),
    ("paused → queued", "POST", "/api/v3/jobs/{job}/setstatus", {"status": "queued", "reason": "x"}),
    ("delete", "DELETE", "/api/v3/jobs/{job}", None),
    ("delete an unknown job", "DELETE", f"/api/v3/jobs/{UNKNOWN}", None),
]
# Differences of configuration, not of behaviour: the fake configures a `storage` variable (the test farm
# configures only blender and blenderArgs), and its job types carry descriptions.
CONFIGURED = {"variables": {".storage (only fake)"}, "job types": {".job_types[].description (only fake)"},
              "one job type": {".description (only fake)"}}
# Endpoints a version does not have: both must answer them alike, which the comparison checks anyway.
VERSIONS = [realfarm.VERSION, "3.7", "3.5"]


def call(base: str, method: str, path: str, body) -> tuple[int, str, object]:
    """`body`: JSON, or (bytes, headers) for an upload."""
    if isinstance(body, tuple):
        data, headers = body[0], {"Content-Type": "application/octet-stream", **body[1]}
    else:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback only
    try:
        with opener.open(req, timeout=10) as resp:
            raw, code, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as ex:
        raw, code, ctype = ex.read(), ex.code, ex.headers.get("Content-Type", "")
    value = json.loads(raw) if raw and "json" in ctype else None
    return code, ctype.split(";")[0].strip(), value


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def differences(fake, real, path: str = "") -> list[str]:
    if isinstance(fake, dict) and isinstance(real, dict):
        out = []
        for key in sorted(set(fake) | set(real)):
            if key not in fake:
                out.append(f"{path}.{key} (only real)")
            elif key not in real:
                out.append(f"{path}.{key} (only fake)")
            else:
                out += differences(fake[key], real[key], f"{path}.{key}")
        return out
    if isinstance(fake, list) and isinstance(real, list):
        return differences(fake[0], real[0], path + "[]") if fake and real else []
    return [] if fake == real else [f"{path}: {fake} vs {real}"]


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_answers_like_the_real_manager(version, tmp_path):
    reason = realfarm.missing_reason(version)
    if reason:
        pytest.skip(reason)
    with realfarm.RealFarm(tmp_path / "farm", version=version) as real, FakeManager(version=version) as fake:
        fake.state.shared_storage = str(real.shared)
        ids: dict[str, dict[str, str]] = {"fake": {}, "real": {}}
        # the real Worker sleeps, so the real job stays as untouched as the fake's (which has no Worker)
        worker = real.awake_worker()
        ids["real"]["worker"] = worker["id"]
        ids["fake"]["worker"] = fake.state.add_worker("fake-worker")["id"]
        real.api("POST", f"/api/v3/worker-mgt/workers/{worker['id']}/setstatus", {"status": "asleep", "is_lazy": False})
        deadline = time.monotonic() + 30
        while real.awake_worker() is not None:
            assert time.monotonic() < deadline, real.logs()
            time.sleep(0.3)
        report: list[str] = []

        def compare(label, method, path, body):
            answers = {}
            for name, base in (("fake", fake.url), ("real", real.url)):
                answers[name] = call(base, method, path.format(**ids[name]), body)
            (fcode, ftype, fbody), (rcode, rtype, rbody) = answers["fake"], answers["real"]
            if (fcode, ftype) != (rcode, rtype):
                report.append(f"{label}: fake {fcode} {ftype!r}, real {rcode} {rtype!r} ({fbody} / {rbody})")
            else:
                allowed = CONFIGURED.get(label, set())
                report.extend(f"{label}: {d}" for d in differences(shape(fbody), shape(rbody)) if d not in allowed)
            return answers

        for case in READS:
            compare(*case)
        compare("variables", "GET", "/api/v3/configuration/variables/users/linux", None)
        submitted = compare("submit, paused", "POST", "/api/v3/jobs", dict(JOB, initial_status="paused")
                            if version != "3.5" else JOB)
        for name, (code, _t, body) in submitted.items():
            assert code == 200, (name, body)
            ids[name]["job"] = body["id"]
        time.sleep(0.5)
        for name, base in (("fake", fake.url), ("real", real.url)):
            ids[name]["task"] = call(base, "GET", f"/api/v3/jobs/{ids[name]['job']}/tasks", None)[2]["tasks"][0]["id"]
        for case in AFTER_SUBMIT:
            if version == "3.5" and case[0] == "paused → queued":
                continue   # 3.5 has no initial status: the job was queued from the start
            compare(*case)
        assert report == [], "\n".join(report)


def _shaman_cases() -> list:
    import hashlib
    content = b"flamenco panel fidelity\n" * 100
    sha, size = hashlib.sha256(content).hexdigest(), len(content)
    other = b"another file\n"
    osha, osize = hashlib.sha256(other).hexdigest(), len(other)
    spec = {"files": [{"path": "scenes/a.blend", "sha": sha, "size": size}]}
    upload = (content, {"X-Shaman-Original-Filename": "a.blend"})
    return [
        ("requirements, unknown file", "POST", "/api/v3/shaman/checkout/requirements", spec),
        ("file, not there", "GET", f"/api/v3/shaman/files/{sha}/{size}", None),
        ("checkout of a missing file", "POST", "/api/v3/shaman/checkout/create",
         dict(spec, checkoutPath="fidelity/missing")),
        ("upload, wrong size", "POST", f"/api/v3/shaman/files/{sha}/{size + 1}", upload),
        ("upload, wrong checksum", "POST", f"/api/v3/shaman/files/{osha}/{size}", upload),
        ("upload", "POST", f"/api/v3/shaman/files/{sha}/{size}", upload),
        ("file, there", "GET", f"/api/v3/shaman/files/{sha}/{size}", None),
        ("upload again", "POST", f"/api/v3/shaman/files/{sha}/{size}", upload),
        ("upload again, deferrable", "POST", f"/api/v3/shaman/files/{sha}/{size}",
         (content, {"X-Shaman-Original-Filename": "a.blend", "X-Shaman-Can-Defer-Upload": "true"})),
        ("requirements, known file", "POST", "/api/v3/shaman/checkout/requirements", spec),
        ("requirements, mixed", "POST", "/api/v3/shaman/checkout/requirements",
         {"files": spec["files"] + [{"path": "b.txt", "sha": osha, "size": osize}]}),
        ("checkout", "POST", "/api/v3/shaman/checkout/create", dict(spec, checkoutPath="fidelity/one")),
        ("checkout, same path again", "POST", "/api/v3/shaman/checkout/create", dict(spec, checkoutPath="fidelity/one")),
        ("checkout, path outside", "POST", "/api/v3/shaman/checkout/create", dict(spec, checkoutPath="../outside")),
        ("requirements, bad body", "POST", "/api/v3/shaman/checkout/requirements", {"files": "none"}),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_shaman_answers_like_the_real_one(version, tmp_path):
    reason = realfarm.missing_reason(version)
    if reason:
        pytest.skip(reason)
    with realfarm.RealFarm(tmp_path / "farm", version=version, shaman=True) as real, \
            FakeManager(version=version, shaman=True) as fake:
        fake.state.shared_storage = str(real.shared)
        report = []
        for label, method, path, body in _shaman_cases():
            (fcode, ftype, fbody), (rcode, rtype, rbody) = (call(fake.url, method, path, body),
                                                            call(real.url, method, path, body))
            if (fcode, ftype) != (rcode, rtype):
                report.append(f"{label}: fake {fcode} {ftype!r}, real {rcode} {rtype!r} ({fbody} / {rbody})")
            else:
                report.extend(f"{label}: {d}" for d in differences(shape(fbody), shape(rbody)))
        assert report == [], "\n".join(report)
