# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's package name (e.g. `bl_ext.user_default.flamenco_panel`) and its user folder."""
from __future__ import annotations

_package = "flamenco_panel"


def set_package(name: str) -> None:
    global _package
    _package = name


def package() -> str:
    return _package


def user_path(*parts: str, create: bool = True) -> str:
    """A path under the extension's own user folder: the only place it writes files."""
    import bpy

    return bpy.utils.extension_path_user(_package, path="/".join(parts), create=create)
