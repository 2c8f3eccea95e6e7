# SPDX-License-Identifier: GPL-3.0-or-later
"""Knows Flamenco; never imports bpy. Runs in Blender, in the helper process, in the CLI and in tests."""
