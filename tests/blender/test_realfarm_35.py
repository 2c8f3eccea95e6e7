# SPDX-License-Identifier: GPL-3.0-or-later
"""The oldest supported Manager, a real Flamenco 3.5 Manager and Worker: found by what its spec offers (jobs
listed through POST /jobs/query, no pause), submitted to, listed, canceled, and driven from the CLI.
Skips, saying why, without the 3.5 binaries (tests/realfarm.py).
"""
from __future__ import annotations

import json

import bpy
import pytest

import realfarm
from farmsteps import echo_job, find, job_status, spec_problems, state, wait_for

VERSION = "3.5"
_REASON = realfarm.missing_reason(VERSION)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def old_farm(tmp_path_factory):
    with realfarm.RealFarm(tmp_path_factory.mktemp("realfarm-3.5"), version=VERSION) as farm:
        yield farm


@pytest.fixture
def old(old_farm, pointed_at, shot):
    return pointed_at(old_farm)


def test_detected_as_3_5_without_pause(old):
    st = state()
    assert bpy.ops.flamenco_panel.ping() == {'FINISHED'}
    assert st.connection == 'CONNECTED', st.message
    assert st.manager_version.startswith("3.5") and not st.can_pause


def test_submit_list_complete_and_pause_refused(old, sent):
    st = state()
    job_id = echo_job("old echo")
    assert old.job(job_id)["metadata"]["user.name"]
    bpy.ops.flamenco_panel.refresh()
    assert find(st.jobs, job_id).is_mine
    start = len(sent)
    with pytest.raises(RuntimeError, match="cannot pause"):
        bpy.ops.flamenco_panel.pause_job(job_id=job_id)
    assert [u for m, u, _b in sent[start:] if m != "GET"] == []
    wait_for(old, "the echo job to complete", lambda: job_status(job_id) == "completed")
    queried = [u for m, u, _b in sent if m == "POST" and u.endswith("/api/v3/jobs/query")]
    assert queried                                 # 3.5 lists jobs through the query endpoint


def test_cancel_and_cli(old, run):
    job_id = echo_job("old long", seconds=60)
    code, out, err = run("jobs", "--json")
    assert code == 0, err
    assert any(j["id"] == job_id and j["is_mine"] for j in json.loads(out)["jobs"])
    code, _, err = run("pause", job_id)
    assert code == 1 and "cannot pause" in err
    code, out, err = run("cancel", "old long")
    assert code == 0, err
    wait_for(old, "the job to be canceled", lambda: job_status(job_id) == "canceled", timeout=60)
    code, out, _ = run("status", "--json")
    assert json.loads(out)["version"].startswith("3.5")


def test_every_request_body_matches_the_served_spec(old, sent):
    problems, posts = spec_problems(old, sent)
    assert problems == []
    assert {"jobs", "query", "setstatus"} <= posts, posts
