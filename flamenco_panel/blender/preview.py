# SPDX-License-Identifier: GPL-3.0-or-later
"""The selected job's last-rendered image as a panel preview (fetched by the helper into the user folder)."""
from __future__ import annotations

import os

from ..core import paths
from . import addon, runtime

_previews = None
_shown: dict = {}     # {"job_id": str, "key": preview name}
_pending: set[str] = set()


def _collection():
    global _previews
    if _previews is None:
        import bpy.utils.previews
        _previews = bpy.utils.previews.new()
    return _previews


def icon_for(job_id: str) -> int:
    """The preview's icon id for the panel (0: none yet; also 0 in background mode, which has no icons)."""
    if _shown.get("job_id") != job_id or _previews is None or _shown.get("key") not in _previews:
        return 0
    return _previews[_shown["key"]].icon_id


def image_size(job_id: str) -> tuple[int, int]:
    """Pixel size of the loaded preview of `job_id`, (0, 0) when none is loaded."""
    if _shown.get("job_id") != job_id or _previews is None or _shown.get("key") not in _previews:
        return 0, 0
    return tuple(_previews[_shown["key"]].image_size)


def apply(data: dict) -> None:
    job_id = data.get("job_id", "")
    _pending.discard(job_id)
    path = data.get("path", "")
    from . import state
    selected = state.selected_job(state.get())
    if not path or not os.path.isfile(path) or selected is None or selected.id != job_id:
        return   # no image, or the user has selected another job since
    previews = _collection()
    key = f"{job_id}:{os.path.getmtime(path)}"
    if key not in previews:
        previews.clear()
        previews.load(key, path, 'IMAGE')
    _shown.update(job_id=job_id, key=key)


def request(job_id: str) -> None:
    """Asks the helper for the job's last-rendered image; the panel shows it when it arrives."""
    if not job_id or job_id in _pending:
        return
    _pending.add(job_id)
    dest = os.path.join(addon.user_path("last-rendered"), f"{paths.safe_job_name(job_id)}.jpg")   # one per job
    runtime.dispatch("last_rendered", {"job_id": job_id, "dest": dest, "suffix": "last-rendered-small.jpg"},
                     apply, lambda ex: _pending.discard(job_id))


def clear() -> None:
    global _previews
    _shown.clear()
    _pending.clear()
    if _previews is not None:
        import bpy.utils.previews
        bpy.utils.previews.remove(_previews)
        _previews = None
