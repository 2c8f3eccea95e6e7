# SPDX-License-Identifier: GPL-3.0-or-later
"""Submission planning rules that need no Manager: modes, free pack folders, job bodies."""
from __future__ import annotations

import datetime

import pytest

from flamenco_panel.core import errors, submission, submitting


def snapshot(tmp_path, **kw) -> submission.Snapshot:
    values = dict(job_name="shot: v1", job_type="simple-blender-render", type_etag="e", settings={"blendfile": "x"},
                  priority=50, platform="linux", blendfile=str(tmp_path / "proj/scenes/shot.blend"),
                  original_blendfile=str(tmp_path / "proj/scenes/shot.blend"), project_root=str(tmp_path / "proj"),
                  metadata={"user.name": "ana"})
    values.update(kw)
    return submission.Snapshot(**values)


def test_two_submissions_in_one_second_get_their_own_folder(tmp_path):
    snap = snapshot(tmp_path)
    when = datetime.datetime(2026, 12, 3, 15, 0, 0)
    first = submitting._free_pack_target(str(tmp_path / "shared"), snap, when)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / first.directory.rsplit("/", 1)[1]).mkdir()   # taken by another job
    second = submitting._free_pack_target(str(tmp_path / "shared"), snap, when)
    assert second.directory != first.directory and second.directory.endswith("-2")
    assert second.blendfile.endswith("/scenes/shot.blend")


def test_plan_mode(tmp_path):
    assert submitting.plan_mode("/srv/farm/p/shot.blend", "/srv/farm", False, "linux") == "in_place"
    assert submitting.plan_mode("/home/ana/shot.blend", "/srv/farm", False, "linux") == "pack"
    assert submitting.plan_mode("/home/ana/shot.blend", "/srv/farm/jobs", True, "linux") == "shaman"
    assert submitting.plan_mode("S:\\farm\\p\\shot.blend", "s:\\FARM", False, "windows") == "in_place"


def test_submitted_job_body(tmp_path):
    body = submission.submitted_job(snapshot(tmp_path, worker_tag="uuid-1", paused=True), "/srv/farm/x.blend",
                                    shaman_checkout="co-1")
    assert body["settings"]["blendfile"] == "/srv/farm/x.blend" and body["storage"] == {"shaman_checkout_id": "co-1"}
    assert body["worker_tag"] == "uuid-1" and body["initial_status"] == "paused"
    with pytest.raises(errors.ConfigurationError, match="3.6"):
        submission.submitted_job(snapshot(tmp_path, paused=True), "/x", can_set_initial_status=False)


def test_metadata_is_all_strings():
    meta = submission.metadata("ana ", "", "/p/shot.blend", "4.2.23", "0.1.0", hostname="box")
    assert meta == {"user.name": "ana", "user.hostname": "box", "blendfile": "/p/shot.blend",
                    "blender.version": "4.2.23", "flamenco_panel.version": "0.1.0"}


def test_unsaved_or_unc_files_are_refused_early():
    with pytest.raises(errors.ConfigurationError, match="Save the blend file"):
        submission.check_submittable("job", "", "linux", "ana")
    with pytest.raises(errors.ConfigurationError, match="drive"):
        submission.check_submittable("job", "\\\\server\\share\\shot.blend", "windows", "ana")
    with pytest.raises(errors.ConfigurationError, match="user name"):
        submission.check_submittable("job", "/p/shot.blend", "linux", " ")
