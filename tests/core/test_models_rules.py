# SPDX-License-Identifier: GPL-3.0-or-later
"""Tolerant parsing of real-shaped payloads (3.5, 3.7, 3.8+) and the web UI's status rules."""
from __future__ import annotations

import dataclasses

import pytest

from flamenco_panel.core import errors, rules
from flamenco_panel.core.client import Capabilities, capabilities_from_spec
from flamenco_panel.core.models import (Job, LastRendered, TaskSummary, Version, Worker, from_link,
                                        progress_from_tasks, timestamp)

JOB_35 = {"id": "a1", "name": "shot", "type": "simple-blender-render", "priority": 50, "status": "active",
          "activity": "rendering", "created": "2023-06-01T10:00:00.123456789+02:00",
          "updated": "2023-06-01T10:05:00Z", "submitter_platform": "linux",
          "settings": {"frames": "1-10"}, "metadata": {"user.name": "ana", "project": "x"}}
JOB_38 = dict(JOB_35, steps_completed=3, steps_total=12, worker_tag="6d2b...", delete_requested_at=None)
TASK_36 = {"id": "t1", "name": "render-1-5", "status": "queued", "priority": 50, "task_type": "blender",
           "updated": "2023-06-01T10:00:00Z"}
TASK_37_UNASSIGNED = dict(TASK_36, index_in_job=0, worker={"id": "", "name": "", "address": ""})
TASK_38_ASSIGNED = dict(TASK_36, index_in_job=1, steps_completed=2, steps_total=4,
                        worker={"id": "w1", "name": "box", "address": "10.0.0.2"})


def test_job_35_without_steps():
    job = Job.from_api(JOB_35)
    assert job.steps_total == -1 and job.progress is None
    assert job.user_name == "ana" and job.settings == {"frames": "1-10"}
    assert timestamp(job.created) > 0


def test_job_38_with_steps():
    assert Job.from_api(JOB_38).progress == pytest.approx(0.25)


def test_unknown_status_is_kept():
    assert Job.from_api(dict(JOB_35, status="exploding")).status == "exploding"
    assert not rules.job_action_allowed("cancel", "exploding")


def test_garbage_never_crashes():
    for payload in (None, [], "x", 3, {"id": None, "priority": "high", "metadata": ["x"], "settings": 5,
                                       "steps_total": {"a": 1}, "created": "yesterday"}):
        job = Job.from_api(payload)
        assert job.priority in (50,) and job.metadata == {} and job.settings == {}
        assert timestamp(job.created) == 0.0
    assert Worker.from_api({"tags": [1, {"name": "gpu"}], "status_change": "x"}).tags == ["gpu"]


def test_task_worker_absent_empty_or_set():
    assert TaskSummary.from_api(TASK_36).worker_id == ""
    assert TaskSummary.from_api(TASK_37_UNASSIGNED).worker_id == ""
    assigned = TaskSummary.from_api(TASK_38_ASSIGNED)
    assert (assigned.worker_id, assigned.worker_name, assigned.progress) == ("w1", "box", 0.5)


def test_progress_from_task_counts():
    tasks = [TaskSummary.from_api(dict(TASK_36, status=s)) for s in ("completed", "queued", "completed", "failed")]
    assert progress_from_tasks(tasks) == 0.5
    assert progress_from_tasks([]) == 0.0


def test_models_cross_the_link():
    job = Job.from_api(JOB_38)
    assert from_link(Job, dict(dataclasses.asdict(job), future_field=1)) == job


def test_version_numbers():
    assert Version(shortversion="3.9-beta1").numbers == (3, 9)
    assert Version(version="3.5").numbers == (3, 5)
    assert Version(version="set-during-build").numbers is None


def test_last_rendered_url():
    info = LastRendered.from_api({"base": "/job-files/x/last-rendered", "suffixes": ["last-rendered.jpg",
                                                                                    "last-rendered-small.jpg"]})
    assert info.url("last-rendered.jpg") == "/job-files/x/last-rendered/last-rendered.jpg"


def test_capabilities_from_spec_and_fallback():
    spec = {"paths": {"/api/v3/jobs": {"get": {"operationId": "fetchJobs"}}},
            "components": {"schemas": {"JobStatus": {"enum": ["active", "pause-requested"]}}}}
    caps = capabilities_from_spec(Version(version="3.9"), spec)
    assert caps.lists_jobs_with_get and caps.can_pause
    old = capabilities_from_spec(Version(version="3.5"), {"paths": {}})
    assert old.spec_known and not old.can_pause and not old.lists_jobs_with_get
    assert Capabilities(Version(version="3.5")).can_pause is False
    assert Capabilities(Version(version="3.6")).can_pause is True
    assert Capabilities.from_dict(caps.to_dict()) == caps
    served = {"paths": {"/api/v3/jobs": {"get": {"operationId": "FetchJobs"}}}}   # as a real Manager serves it
    assert capabilities_from_spec(Version(version="3.9"), served).lists_jobs_with_get


# --- rules ------------------------------------------------------------------------------------

ALL_STATUSES = ["active", "canceled", "completed", "failed", "paused", "pause-requested", "queued",
                "cancel-requested", "requeueing", "under-construction", "new-in-3.10"]
EXPECTED = {
    "cancel": {"active", "failed", "paused", "pause-requested", "queued"},
    "pause": {"active", "canceled", "queued"},
    "requeue": {"canceled", "completed", "failed", "paused"},
    "delete": {"canceled", "completed", "failed", "paused", "queued"},
}


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_web_ui_status_table(action):
    allowed = {s for s in ALL_STATUSES if rules.job_action_allowed(action, s)}
    assert allowed == EXPECTED[action]


def test_pause_needs_a_manager_that_can():
    assert not rules.job_action_allowed("pause", "active", can_pause=False)


def test_is_mine():
    job = Job.from_api(JOB_35)
    assert rules.is_mine(job, "ana") and rules.is_mine(job, " ana ")
    assert not rules.is_mine(job, "bob") and not rules.is_mine(job, "")
    assert not rules.is_mine(Job.from_api(dict(JOB_35, metadata={})), "")


def test_check_job_action_refuses_others_and_bad_status():
    job = Job.from_api(JOB_35)
    with pytest.raises(errors.ActionNotAllowed, match="belongs to ana"):
        rules.check_job_action("cancel", job, "bob")
    assert rules.check_job_action("cancel", job, "bob", allow_others=True).target_status == "cancel-requested"
    with pytest.raises(errors.ActionNotAllowed, match="it is completed"):
        rules.check_job_action("cancel", Job.from_api(dict(JOB_35, status="completed")), "ana")
    with pytest.raises(errors.ActionNotAllowed, match="3.6"):
        rules.check_job_action("pause", job, "ana", can_pause=False)


def test_task_and_worker_rules():
    assert rules.check_task_action("cancel", "soft-failed").target_status == "canceled"
    with pytest.raises(errors.ActionNotAllowed):
        rules.check_task_action("requeue", "active")
    assert rules.check_worker_status("asleep") == "asleep"
    with pytest.raises(errors.ActionNotAllowed):
        rules.check_worker_status("restart", can_restart=False)
    with pytest.raises(errors.ActionNotAllowed):
        rules.check_worker_status("explode")


def test_errors_cross_the_link():
    ex = errors.JobTypeStale("changed", status=412)
    back = errors.FlamencoError.from_dict(ex.to_dict())
    assert type(back) is errors.JobTypeStale and back.status == 412 and back.message == "changed"
    assert type(errors.FlamencoError.from_dict({"kind": "SomethingNew", "message": "m"})) is errors.FlamencoError
