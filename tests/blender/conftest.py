# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-bpy fixtures: the built zip installed through Blender's extension machinery.

BLENDER_USER_RESOURCES points at a temp folder before bpy is imported, so the
user's own Blender config is never touched. The extension is uninstalled at
the end (bpy 4.2 crashes at exit while add-on classes stay registered).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

_USER = tempfile.mkdtemp(prefix="flamenco-panel-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER

import bpy  # noqa: E402  (after the environment is set)

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULE = "bl_ext.user_default.flamenco_panel"


def built_zip() -> pathlib.Path:
    explicit = os.environ.get("FLAMENCO_PANEL_ZIP")
    if explicit:
        return pathlib.Path(explicit)
    out = pathlib.Path(tempfile.mkdtemp(prefix="flamenco-panel-dist-"))
    subprocess.run([sys.executable, str(ROOT / "build.py"), "--output-dir", str(out)], check=True,
                   capture_output=True)
    return next(out.glob("flamenco_panel-*.zip"))


def _repo_index() -> int:
    repos = bpy.context.preferences.extensions.repos
    return next(i for i, r in enumerate(repos) if r.module == "user_default")


@pytest.fixture(scope="session")
def extension():
    """The installed, enabled extension module (bl_ext.user_default.flamenco_panel)."""
    result = bpy.ops.extensions.package_install_files(filepath=str(built_zip()), repo="user_default",
                                                      enable_on_install=True)
    assert result == {'FINISHED'}
    module = sys.modules[MODULE]
    yield module
    from importlib import import_module
    import_module(MODULE + ".blender.runtime").stop()
    bpy.ops.extensions.package_uninstall(repo_index=_repo_index(), pkg_id="flamenco_panel")


@pytest.fixture
def prefs(extension):
    return current_prefs()


@pytest.fixture
def wm_state(extension):
    return bpy.context.window_manager.flamenco_panel


@pytest.fixture
def online():
    bpy.context.preferences.system.use_online_access = True
    yield
    bpy.context.preferences.system.use_online_access = False


@pytest.fixture
def runtime(extension):
    """The runtime module, driven through the helper process as the UI would be."""
    from importlib import import_module
    rt = import_module(MODULE + ".blender.runtime")
    rt.force_interactive = True
    yield rt
    rt.force_interactive = False


def current_prefs():
    """Looked up afresh: a test may re-register the add-on, which frees the old preferences struct."""
    return bpy.context.preferences.addons[MODULE].preferences


@pytest.fixture
def fake_manager(extension):
    from fakemanager import FakeManager
    with FakeManager() as manager:
        old = current_prefs().manager_url
        current_prefs().manager_url = manager.url
        yield manager
        current_prefs().manager_url = old


@pytest.fixture(autouse=True)
def clean_state(request):
    """Each test starts from an empty farm view."""
    yield
    if MODULE in sys.modules and hasattr(bpy.types.WindowManager, "flamenco_panel"):
        st = bpy.context.window_manager.flamenco_panel
        st.jobs.clear(); st.tasks.clear(); st.workers.clear()
        st.connection, st.message, st.notice, st.last_refresh = 'IDLE', "", "", 0.0
        st.active_job_index = -1
        from importlib import import_module
        import_module(MODULE + ".blender.state").forget_mirrors()


@pytest.fixture
def storage(fake_manager, tmp_path):
    """Shared storage the fake Manager reports (and its `storage` variable), as a real folder here."""
    root = tmp_path / "shared"
    root.mkdir()
    fake_manager.state.shared_storage = str(root)
    for value in fake_manager.state.variables["storage"]["values"]:
        if value["platform"] == "linux":
            value["value"] = str(root)
    return root


def digest(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def saved_unchanged(extension, monkeypatch):
    """Module-mode bpy never clears is_dirty; real Blender does after a save. Say the file is clean."""
    monkeypatch.setattr(sys.modules[MODULE + ".blender.submit"], "file_is_dirty", lambda: False)


@pytest.fixture
def project(tmp_path):
    """<proj>/.blender_project, scenes/shot.blend using textures/wood.png and a linked library."""
    proj = tmp_path / "proj"
    (proj / "textures").mkdir(parents=True)
    (proj / ".blender_project").write_text("")
    png = proj / "textures" / "wood.png"
    image = bpy.data.images.new("wood", 4, 4)
    image.filepath_raw = str(png)
    image.file_format = 'PNG'
    image.save()
    bpy.data.images.remove(image)

    def configure(scene):
        scene.frame_start, scene.frame_end = 1, 3
        scene.render.filepath = str(tmp_path / "renders") + "/"

    from scenes import save_shot_with_dependencies
    shot = save_shot_with_dependencies(proj, [png], configure)
    yield shot
    bpy.ops.wm.read_homefile(use_empty=True)


@pytest.fixture
def cli(extension, monkeypatch):
    module = sys.modules[MODULE + ".blender.cli"]
    monkeypatch.setattr(module, "POLL_SECONDS", 0.05)
    return module


@pytest.fixture
def run(cli, capsys):
    """run(*argv) -> (exit code, stdout, stderr)."""
    def call(*argv):
        capsys.readouterr()   # what fixtures printed is not the command's output
        code = cli.execute([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture
def shot(tmp_path):
    """A saved scene (the default cube), outside shared storage: submission packs it with BAT."""
    from farmsteps import save_shot
    path = tmp_path / "shot.blend"
    save_shot(path)
    yield path
    bpy.ops.wm.read_homefile(use_empty=True)


# --- the real farm (tests/realfarm.py); only started by tests that are not skipped for want of it ---

@pytest.fixture(scope="session")
def real_farm(tmp_path_factory):
    """A real Manager (3.9, Shaman off) and Worker, shared by the real-farm modules."""
    import realfarm
    with realfarm.RealFarm(tmp_path_factory.mktemp("realfarm")) as farm:
        yield farm


@pytest.fixture(scope="module")
def sent(extension):
    """Every `requests` call this module's tests make in this process (farmsteps.Recorder)."""
    import farmsteps
    recorder = farmsteps.Recorder().install()
    yield recorder.calls
    recorder.remove()


@pytest.fixture
def pointed_at(sent, prefs, online, wm_state):
    """pointed_at(farm): the extension's preferences aimed at `farm` for this test (restored after)."""
    import farmsteps
    old = prefs.manager_url, prefs.user_name
    assert not farmsteps.sub("blender.runtime").interactive()   # synchronous, in this process

    def point(farm):
        prefs.manager_url, prefs.user_name = farm.url, farmsteps.USER
        farmsteps.sub("blender.settings").catalog.clear()
        return farm

    yield point
    prefs.manager_url, prefs.user_name = old
