# SPDX-License-Identifier: GPL-3.0-or-later
"""Flamenco Panel: submit to and watch a Flamenco render farm from Blender.

Only register()/unregister() live here. `bpy` is imported inside them so that
`flamenco_panel.core` and `flamenco_panel.link` import without Blender
(tests, the helper process).
"""


def register() -> None:
    from .blender import registration

    registration.register(__package__)


def unregister() -> None:
    from .blender import registration

    registration.unregister()
