# SPDX-License-Identifier: GPL-3.0-or-later
"""Which Blender classes, timers and properties exist; register() makes no request and starts no process."""
from __future__ import annotations

import bpy

from . import addon, cli, lists, logview, operators, panels, preferences, preview, runtime, settings, state, submit

_CLASSES = (preferences.FLAMENCO_AP_preferences, *state.CLASSES, *operators.CLASSES, *lists.CLASSES,
            *panels.CLASSES)
_cli_handle = None   # `blender -c flamenco …` (Blender 4.2+)


@bpy.app.handlers.persistent
def _file_loaded(_filepath) -> None:
    """A newly opened file has its own submission choices: show them (no request is made)."""
    if settings.catalog:
        settings.sync_scene(bpy.context.scene)


def register(package: str) -> None:
    addon.set_package(package)
    preferences.FLAMENCO_AP_preferences.bl_idname = package
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.flamenco_panel = bpy.props.PointerProperty(type=state.FLAMENCO_PG_state)
    settings.register()
    runtime.start_timer()
    bpy.app.handlers.load_post.append(_file_loaded)
    global _cli_handle
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("flamenco", cli.execute)


def unregister() -> None:
    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    if _file_loaded in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_file_loaded)
    for step in (runtime.stop, logview.clear, preview.clear, submit.forget, state.forget_mirrors,
                 settings.unregister):
        try:   # one failing step must not leave the rest registered
            step()
        except Exception as ex:
            print(f"Flamenco Panel: while unregistering: {type(ex).__name__}: {ex}")
    if hasattr(bpy.types.WindowManager, "flamenco_panel"):
        del bpy.types.WindowManager.flamenco_panel
    for cls in reversed(_CLASSES):
        try:
            bpy.utils.unregister_class(cls)
        except RuntimeError:
            pass
