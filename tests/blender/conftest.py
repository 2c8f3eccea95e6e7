# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-bpy fixtures: the built zip installed through Blender's extension machinery.

BLENDER_USER_RESOURCES points at a temp folder before bpy is imported, so the
user's own Blender config is never touched. The extension is uninstalled at
the end (bpy 4.2 crashes at exit while add-on classes stay registered).
"""
from __future__ import annotations

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
