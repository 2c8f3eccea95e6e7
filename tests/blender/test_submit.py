# SPDX-License-Identifier: GPL-3.0-or-later
"""Submitting the current scene in real bpy against the fake Manager: pack, in place, Shaman, safety."""
from __future__ import annotations

import pathlib
import time

import bpy
import pytest

from conftest import digest

MODULE = "bl_ext.user_default.flamenco_panel"


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


@pytest.fixture
def ready(prefs, online, fake_manager, storage):
    sub("blender.settings").catalog.clear()
    return fake_manager


def submitted_jobs(fm):
    return [r for r in fm.requests if r.method == "POST" and r.path == "/api/v3/jobs"]


def test_unsaved_file_gets_a_clear_message(ready):
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.data.filepath == ""
    with pytest.raises(RuntimeError, match="Save the blend file"):
        bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings='{"message": "hi"}')
    assert submitted_jobs(ready) == []


def test_bad_settings_json_and_unknown_setting(ready, project):
    with pytest.raises(RuntimeError, match="JSON object"):
        bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings="[1]")
    with pytest.raises(RuntimeError, match="no setting 'nope'"):
        bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings='{"nope": 1}')
    with pytest.raises(RuntimeError, match="message"):
        bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test")   # required setting empty
    assert submitted_jobs(ready) == []


def test_echo_sleep_job_with_metadata(ready, project, prefs, wm_state, storage):
    prefs.user_email = "ana@example.com"
    try:
        bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", job_name="echo",
                                          settings='{"message": "hello", "sleep_duration_seconds": "2"}')
    finally:
        prefs.user_email = ""
    (post,) = submitted_jobs(ready)
    body = post.json
    assert body["settings"] == {"message": "hello", "sleep_duration_seconds": 2, "sleep_repeats": 1}
    meta = body["metadata"]
    assert meta["user.name"] == prefs.user_name and meta["user.email"] == "ana@example.com"
    assert meta["blendfile"] == str(project) and meta["blender.version"] == bpy.app.version_string
    assert meta["flamenco_panel.version"] and meta["user.hostname"]
    assert all(isinstance(v, str) for v in meta.values())
    assert body["submitter_platform"] == "linux" and body["type_etag"]
    assert ready.count("POST", "/api/v3/jobs/check") == 1
    assert list(storage.iterdir()) == []                          # a job type without a file packs nothing
    assert sorted(p.name for p in project.parent.iterdir()) == ["shot.blend"]
    assert wm_state.last_submitted_id == ready.state.jobs[wm_state.last_submitted_id]["id"]
    # the new job is in the list, mine, selected
    job = sub("blender.state").selected_job(wm_state)
    assert job is not None and job.id == wm_state.last_submitted_id and job.is_mine


def test_simple_blender_render_is_packed_and_artist_file_untouched(ready, project, storage, tmp_path):
    before = digest(project)
    scene_dir = project.parent
    bpy.context.scene.frame_end = 5            # an unsaved change: it must be what is submitted
    bpy.ops.flamenco_panel.submit_job(job_type="simple-blender-render", job_name="shot: v1/final",
                                      settings=f'{{"render_output_root": "{tmp_path / "out"}"}}')
    assert digest(project) == before                                  # artist's file byte-identical
    assert sorted(p.name for p in scene_dir.iterdir()) == ["shot.blend"]   # no .blend1, no temp copy left
    (post,) = submitted_jobs(ready)
    settings = post.json["settings"]
    assert settings["frames"] == "1-5" and settings["scene"] == bpy.context.scene.name
    assert settings["render_output_path"].startswith(str(tmp_path / "out")) and "######" in settings["render_output_path"]
    assert settings["format"] and settings["image_file_extension"].startswith(".")
    blendfile = pathlib.Path(settings["blendfile"])
    assert blendfile.is_file() and storage in blendfile.parents
    assert blendfile.relative_to(blendfile.parents[1]).as_posix() == "scenes/shot.blend"   # layout kept
    pack_dir = blendfile.parents[1]
    assert ":" not in pack_dir.name and "/" not in pack_dir.name
    assert (pack_dir / "textures" / "wood.png").is_file()
    assert (pack_dir / "libs" / "lib.blend").is_file()


def test_file_inside_shared_storage_is_used_in_place(ready, storage, monkeypatch):
    inside = storage / "projects" / "shot.blend"
    inside.parent.mkdir(parents=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(inside))
    before = digest(inside)
    try:
        args = dict(job_type="simple-blender-render", settings=f'{{"render_output_root": "{storage / "out"}"}}')
        with monkeypatch.context() as clean:
            clean.setattr(sub("blender.submit"), "file_is_dirty", lambda: False)
            bpy.ops.flamenco_panel.submit_job(**args)
        assert submitted_jobs(ready)[-1].json["settings"]["blendfile"] == str(inside)   # saved: used as it is
        bpy.context.scene.frame_end = 7                                              # unsaved change
        bpy.ops.flamenco_panel.submit_job(**args)
        blendfile = submitted_jobs(ready)[-1].json["settings"]["blendfile"]
        assert pathlib.Path(blendfile).parent == inside.parent and pathlib.Path(blendfile).is_file()
        assert blendfile != str(inside) and digest(inside) == before   # a kept copy; the original untouched
        assert sorted(p.name for p in storage.iterdir()) == ["projects"]   # nothing packed
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)


def test_stale_job_type_is_refetched_and_checked_once_more(ready, project):
    bpy.ops.flamenco_panel.load_job_types()
    ready.state.bump_job_type_etag("echo-sleep-test")
    bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings='{"message": "m"}')
    assert ready.count("POST", "/api/v3/jobs/check") == 2 and len(submitted_jobs(ready)) == 1


def test_second_click_while_in_flight_does_nothing(ready, project, runtime, wm_state):
    ready.fault("POST", "/api/v3/jobs/check", "slow", seconds=1.0)
    submit = sub("blender.submit")
    sub("blender.submit").load_catalog_now() if False else None
    runtime.force_interactive = False
    bpy.ops.flamenco_panel.load_job_types()
    runtime.force_interactive = True
    assert bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings='{"message": "m"}') == {'FINISHED'}
    assert submit.in_flight()
    assert bpy.ops.flamenco_panel.submit_job(job_type="echo-sleep-test", settings='{"message": "m"}') == {'CANCELLED'}
    deadline = time.monotonic() + 30
    while submit.in_flight() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert len(submitted_jobs(ready)) == 1 and wm_state.last_submitted_id


def test_abort_leaves_no_job_and_no_files(ready, project, runtime, storage, tmp_path):
    ready.fault("POST", "/api/v3/jobs/check", "slow", seconds=1.5)
    submit = sub("blender.submit")
    runtime.force_interactive = False
    bpy.ops.flamenco_panel.load_job_types()
    runtime.force_interactive = True
    bpy.ops.flamenco_panel.submit_job(job_type="simple-blender-render",
                                      settings=f'{{"render_output_root": "{tmp_path / "out"}"}}')
    time.sleep(0.3)
    bpy.ops.flamenco_panel.abort_submit()
    deadline = time.monotonic() + 30
    while submit.in_flight() and time.monotonic() < deadline:
        runtime.drain()
        time.sleep(0.02)
    assert submitted_jobs(ready) == []
    assert list(storage.iterdir()) == []
    assert sorted(p.name for p in project.parent.iterdir()) == ["shot.blend"]


def test_shaman_upload_and_unchanged_resubmit_sends_nothing(prefs, online, project, tmp_path, saved_unchanged):
    from fakemanager import FakeManager
    from conftest import current_prefs
    with FakeManager(shaman=True) as fm:
        old = current_prefs().manager_url
        current_prefs().manager_url = fm.url
        sub("blender.settings").catalog.clear()
        project_digest = digest(project)
        try:
            args = dict(job_type="simple-blender-render", settings=f'{{"render_output_root": "{tmp_path / "out"}"}}')
            bpy.ops.flamenco_panel.submit_job(**args)
            first = submitted_jobs(fm)[-1].json
            assert first["storage"]["shaman_checkout_id"]
            assert first["settings"]["blendfile"].startswith("{jobs}/") and \
                first["settings"]["blendfile"].endswith("/scenes/shot.blend")
            uploaded_first = sum(len(r.body or b"") for r in fm.requests if r.path.startswith("/api/v3/shaman/files/")
                                 and r.method == "POST")
            assert uploaded_first > 0
            before = len(fm.requests)
            bpy.ops.flamenco_panel.submit_job(**args)
            uploads = [r for r in fm.requests[before:] if r.path.startswith("/api/v3/shaman/files/")
                       and r.method == "POST"]
            assert uploads == []   # nothing changed: every file is known to the Manager, 0 bytes sent
            assert len(submitted_jobs(fm)) == 2
            assert digest(project) == project_digest
        finally:
            current_prefs().manager_url = old


def test_panel_settings_live_in_the_scene_and_check(ready, project):
    settings = sub("blender.settings")
    bpy.ops.flamenco_panel.load_job_types()
    props = bpy.context.scene.flamenco_panel
    props.job_type_enum = "echo-sleep-test"
    assert props.job_type == "echo-sleep-test"          # stored by name, not enum position
    holder = bpy.context.scene.flamenco_panel_job_settings
    holder.s_message = "from the panel"
    holder.s_sleep_repeats = 4
    bpy.ops.flamenco_panel.load_job_types()              # a Manager refresh regenerates the classes
    holder = bpy.context.scene.flamenco_panel_job_settings
    assert holder.s_message == "from the panel" and holder.s_sleep_repeats == 4
    before = len(ready.requests)
    bpy.ops.flamenco_panel.check_job()
    checks = [r for r in ready.requests[before:] if r.path == "/api/v3/jobs/check"]
    assert len(checks) == 1 and checks[0].json["settings"]["message"] == "from the panel"
    assert submitted_jobs(ready) == []
    # a job type that disappeared from the Manager is reported, not crashed on
    del ready.state.job_types["echo-sleep-test"]
    bpy.ops.flamenco_panel.load_job_types()
    assert settings.current_type(bpy.context.scene) is None
    with pytest.raises(RuntimeError, match="not available on the Manager"):
        bpy.ops.flamenco_panel.submit_job()
    from recording_layout import draw_panel
    assert draw_panel(bpy.types.FLAMENCO_PT_submit, bpy.context).has_text("gone from the Manager")
