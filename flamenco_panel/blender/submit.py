# SPDX-License-Identifier: GPL-3.0-or-later
"""Submission of the current scene (filled in by the submission work)."""
from __future__ import annotations


def execute(op, context) -> set:
    op.report({'ERROR'}, "Submitting is not available in this version of Flamenco Panel yet")
    return {'CANCELLED'}
