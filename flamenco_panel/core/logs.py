# SPDX-License-Identifier: GPL-3.0-or-later
"""Task log text made safe to show in Blender, and the name of the Text that holds it."""
from __future__ import annotations

import re

from .paths import truncate_utf8

# CSI, OSC (terminated by BEL or ST) and two-character escape sequences.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TEXT_PREFIX = "Flamenco log: "
MAX_NAME = 63   # Blender cuts ID names at 63 bytes


def clean(text: str | bytes) -> str:
    """ANSI escapes and control characters (other than newline and tab) removed; bad UTF-8 replaced."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def cap(text: str, max_chars: int) -> str:
    """Keeps the newest `max_chars`, starting at a line boundary when possible."""
    if len(text) <= max_chars:
        return text
    tail = text[-max_chars:]
    newline = tail.find("\n")
    return tail[newline + 1:] if 0 <= newline < len(tail) - 1 else tail


def text_name(job_name: str, task_name: str, task_id: str) -> str:
    """A Text name naming job and task that fits Blender's limit and stays unique per task."""
    clean_part = lambda s: clean(s).replace("\n", " ").replace("\t", " ").strip()
    suffix = f" [{clean_part(task_id[:8])}]"
    room = MAX_NAME - len(TEXT_PREFIX.encode()) - len(suffix.encode())
    body = f"{clean_part(job_name)} / {clean_part(task_name)}" if job_name else clean_part(task_name)
    return TEXT_PREFIX + truncate_utf8(body, room) + suffix
