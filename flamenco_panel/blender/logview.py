# SPDX-License-Identifier: GPL-3.0-or-later
"""Task logs in Text datablocks, and following a running task (only new bytes are fetched)."""
from __future__ import annotations

import time

import bpy

from ..core import logs
from . import preferences, runtime

TASK_KEY = "flamenco_task_id"
FOLLOW_INTERVAL = 5.0      # worker logs reach the Manager in batches anyway (every 30 s or 10 KiB)
ACTIVE_TASK_STATUSES = frozenset({"active", "queued", "soft-failed"})

# task id → {"text": name, "offset": bytes read, "next": monotonic time of the next fetch}
following: dict[str, dict] = {}
_in_flight: set[str] = set()


def _max_chars() -> int:
    prefs = preferences.get()
    return (prefs.log_max_kb if prefs else 256) * 1024


def text_for(job_name: str, task_name: str, task_id: str):
    name = logs.text_name(job_name, task_name, task_id)
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text[TASK_KEY] = task_id
    return text


def show(text, context=None) -> None:
    """Puts the Text in a Text Editor of the current screen, if there is one."""
    screen = getattr(context or bpy.context, "screen", None)
    for area in getattr(screen, "areas", ()):
        if area.type == 'TEXT_EDITOR':
            area.spaces.active.text = text
            return


def write(text, content: str, append: bool) -> None:
    cleaned = logs.clean(content)
    if append:
        cleaned = text.as_string() + cleaned
    text.from_string(logs.cap(cleaned, _max_chars()))


def start_following(task_id: str, text_name: str, offset: int) -> None:
    following[task_id] = {"text": text_name, "offset": offset, "next": time.monotonic() + FOLLOW_INTERVAL}


def stop_following(task_id: str) -> None:
    following.pop(task_id, None)


def apply_follow(data: dict) -> None:
    task_id = data["task_id"]
    _in_flight.discard(task_id)
    entry = following.get(task_id)
    if entry is None:
        return
    text = bpy.data.texts.get(entry["text"])
    if text is None:           # the user deleted the Text: stop
        stop_following(task_id)
        return
    if data.get("text"):
        write(text, data["text"], append=not data.get("restarted"))
    entry["offset"] = data.get("offset", entry["offset"])
    entry["next"] = time.monotonic() + FOLLOW_INTERVAL
    if data.get("task_status") not in ACTIVE_TASK_STATUSES:
        stop_following(task_id)


def poll() -> None:
    """Called by the timer: fetches what is new for each followed task that is due."""
    now = time.monotonic()
    for task_id, entry in list(following.items()):
        if task_id in _in_flight or now < entry["next"]:
            continue
        _in_flight.add(task_id)

        def failed(ex, task_id=task_id):
            _in_flight.discard(task_id)
            if task_id in following:
                following[task_id]["next"] = time.monotonic() + FOLLOW_INTERVAL * 2

        runtime.dispatch("task_log", {"task_id": task_id, "follow": True, "offset": entry["offset"],
                                      "max_bytes": _max_chars()}, apply_follow, failed)


def clear() -> None:
    following.clear()
    _in_flight.clear()
