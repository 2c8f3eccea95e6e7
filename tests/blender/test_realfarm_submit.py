# SPDX-License-Identifier: GPL-3.0-or-later
"""Submitting to a real Flamenco Manager (3.9) whose real Worker renders the frames: packed with BAT into
shared storage (Shaman off), used in place, and uploaded through Shaman (a second Manager with it on).

Runs the operators in background mode, so they complete here; skips, saying why, without the binaries.
"""
from __future__ import annotations

import os
import pathlib

import bpy
import pytest

import realfarm
from conftest import digest
from farmsteps import frames_of, job_status, save_shot, spec_problems, state, sub, submit, wait_for

_REASON = realfarm.missing_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def shaman_farm(tmp_path_factory):
    with realfarm.RealFarm(tmp_path_factory.mktemp("realfarm-shaman"), shaman=True) as farm:
        yield farm


@pytest.fixture
def render_ready(project):
    """The project's shot (texture in a subfolder, a linked library) made cheap to render: 2 PNG frames."""
    scene = bpy.context.scene
    if scene.camera is None:
        scene.camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        scene.collection.objects.link(scene.camera)
        scene.camera.location = (0.0, -8.0, 0.0)
        scene.camera.rotation_euler = (1.5708, 0.0, 0.0)
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.image_settings.file_format = 'PNG'
    scene.render.resolution_x, scene.render.resolution_y = 160, 90
    bpy.ops.wm.save_mainfile()
    return project


def render(farm, name: str) -> str:
    return submit("simple-blender-render", name,
                  {"frames": "1-2", "chunk_size": 2, "render_output_root": str(farm.shared / "renders")})


def wait_rendered(farm, job_id: str) -> list:
    wait_for(farm, f"job {job_id} to render", lambda: job_status(job_id) in {"completed", "failed"})
    assert job_status(job_id) == "completed", farm.logs()
    return frames_of(farm, job_id)


def dependencies_resolve(blendfile: pathlib.Path) -> dict:
    """Opens a .blend as Blender would and says where its image and library point (absolute, and whether
    they exist there)."""
    bpy.ops.wm.open_mainfile(filepath=str(blendfile), load_ui=False)
    found = {}
    for block in (*bpy.data.images, *bpy.data.libraries):
        if block.filepath:
            path = pathlib.Path(os.path.normpath(bpy.path.abspath(block.filepath,
                                                                  library=getattr(block, "library", None))))
            found[block.name] = (path, path.is_file())
    return found


def test_pack_with_texture_subfolder_and_linked_library_renders(real_farm, pointed_at, render_ready):
    farm = pointed_at(real_farm)
    before = digest(render_ready)
    bpy.context.scene.render.resolution_x = 200         # an unsaved change: submitted, the file left alone
    job_id = render(farm, "rf packed project")
    assert digest(render_ready) == before               # the artist's file is byte-identical
    blendfile = pathlib.Path(farm.job(job_id)["settings"]["blendfile"])
    pack_root = blendfile.parents[1]
    # the layout under the project root (.blender_project) is kept
    assert farm.shared in blendfile.parents and blendfile.relative_to(pack_root).as_posix() == "scenes/shot.blend"
    assert (pack_root / "textures" / "wood.png").is_file() and (pack_root / "libs" / "lib.blend").is_file()
    wait_rendered(farm, job_id)
    # the packed file's own paths lead to the packed copies, not back to the project
    resolved = dependencies_resolve(blendfile)
    assert resolved["wood.png"] == (pack_root / "textures" / "wood.png", True)
    assert resolved["lib.blend"] == (pack_root / "libs" / "lib.blend", True)
    assert bpy.context.scene.render.resolution_x == 200   # what the artist saw, not what was saved
    assert digest(render_ready) == before


def test_file_inside_shared_storage_is_used_in_place(real_farm, pointed_at, saved_unchanged):
    farm = pointed_at(real_farm)
    inside = farm.shared / "projects" / "inplace" / "shot.blend"
    save_shot(inside)
    before = digest(inside)
    listed = sorted(p.name for p in farm.shared.iterdir())
    try:
        job_id = render(farm, "rf in place")
        assert farm.job(job_id)["settings"]["blendfile"] == str(inside)      # nothing copied or packed
        assert sorted(p.name for p in farm.shared.iterdir()) == listed
        wait_rendered(farm, job_id)
        assert digest(inside) == before
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)


def test_shaman_upload_renders_and_unchanged_resubmit_uploads_nothing(shaman_farm, pointed_at, sent, render_ready,
                                                                    saved_unchanged):
    farm = pointed_at(shaman_farm)
    submit_module = sub("blender.submit")
    before = digest(render_ready)

    def uploads(start: int) -> list:
        return [u for m, u, _b in sent[start:] if m == "POST" and "/api/v3/shaman/files/" in u]

    start = len(sent)
    first = render(farm, "rf shaman")
    stored = farm.job(first)
    checkout = stored["storage"]["shaman_checkout_id"]
    assert checkout and stored["settings"]["blendfile"].startswith("{jobs}/")
    assert stored["settings"]["blendfile"].endswith("/scenes/shot.blend")
    assert submit_module._last_result["bytes_uploaded"] > 0 and len(uploads(start)) >= 3   # shot, texture, lib
    # the Manager checked the files out where the Worker will read them
    checked_out = farm.shared / "jobs" / stored["settings"]["blendfile"].removeprefix("{jobs}/")
    assert checked_out.is_file() and checked_out.read_bytes() == render_ready.read_bytes()
    wait_rendered(farm, first)

    start = len(sent)
    second = render(farm, "rf shaman again")
    assert second != first
    assert uploads(start) == [] and submit_module._last_result["bytes_uploaded"] == 0
    assert farm.job(second)["storage"]["shaman_checkout_id"] not in {"", checkout}
    wait_rendered(farm, second)                          # the second checkout is complete: it renders too
    assert digest(render_ready) == before
    problems, posts = spec_problems(farm, sent)
    assert problems == []
    assert {"requirements", "create", "check", "jobs"} <= posts, posts


def submit_through_the_helper(runtime, name: str, farm) -> str:
    """As the panel does: the operator returns at once; the helper process checks, packs or uploads, and
    submits while the timer's drain applies what it reports."""
    import json
    import time
    submit_module = sub("blender.submit")
    runtime.force_interactive = False
    assert bpy.ops.flamenco_panel.load_job_types() == {'FINISHED'}
    runtime.force_interactive = True
    try:
        state().last_submitted_id = ""
        settings = {"frames": "1-2", "chunk_size": 2, "render_output_root": str(farm.shared / "renders")}
        assert bpy.ops.flamenco_panel.submit_job(job_type="simple-blender-render", job_name=name,
                                                 settings=json.dumps(settings)) == {'FINISHED'}
        assert submit_module.in_flight()                      # returned before the work was done
        deadline = time.monotonic() + 120
        while submit_module.in_flight() or runtime.busy():
            assert time.monotonic() < deadline, f"submission still in flight\n{farm.logs()}"
            runtime.drain()
            time.sleep(0.02)
    finally:
        runtime.force_interactive = False
    job_id = state().last_submitted_id
    assert job_id, state().message
    return job_id


def test_pack_through_the_helper_process(real_farm, pointed_at, runtime, render_ready):
    farm = pointed_at(real_farm)
    before = digest(render_ready)
    job_id = submit_through_the_helper(runtime, "rf helper pack", farm)
    blendfile = pathlib.Path(farm.job(job_id)["settings"]["blendfile"])
    assert farm.shared in blendfile.parents and (blendfile.parents[1] / "textures" / "wood.png").is_file()
    wait_rendered(farm, job_id)
    assert digest(render_ready) == before
    assert [p.name for p in render_ready.parent.iterdir() if ".flamenco-" in p.name] == []   # the temporary copy is gone


def test_shaman_through_the_helper_process(shaman_farm, pointed_at, runtime, render_ready):
    farm = pointed_at(shaman_farm)
    bpy.context.scene.render.resolution_y = 100     # unsaved: a new copy of the shot, so something is uploaded
    job_id = submit_through_the_helper(runtime, "rf helper shaman", farm)
    stored = farm.job(job_id)
    assert stored["storage"]["shaman_checkout_id"] and stored["settings"]["blendfile"].startswith("{jobs}/")
    assert sub("blender.submit")._last_result["bytes_uploaded"] > 0
    wait_rendered(farm, job_id)


def test_every_request_body_matches_the_served_spec(real_farm, pointed_at, sent):
    farm = pointed_at(real_farm)
    problems, posts = spec_problems(farm, sent)
    assert problems == []
    assert {"jobs", "check"} <= posts, posts
