# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs core operations for the UI: in the helper process (interactive) or directly (background).

Interactive: `dispatch()` sends the request and returns at once; the
persistent timer calls `drain()`, which hands results to their callbacks on
the main thread. Background mode (scripts, CLI, module-mode tests): the same
operation runs synchronously and the callbacks are called before `dispatch()`
returns. `drain()` is a plain function so tests can drive the interactive path.
"""
from __future__ import annotations

import time
from typing import Callable

import bpy

from ..core import errors, operations
from ..core.client import ManagerClient, check_url
from ..link.channel import Channel
from . import preferences, state

OnResult = Callable[[dict], None]
OnError = Callable[[errors.FlamencoError], None]
OnProgress = Callable[[dict], None]

_channel: Channel | None = None
_callbacks: dict[int, tuple[OnResult, OnError, OnProgress | None]] = {}
# Tests set this to force the interactive (helper) path in module mode, where background is True.
force_interactive = False
TICK_BUSY = 0.1
TICK_IDLE = 0.5
_last_auto_refresh = 0.0


def interactive() -> bool:
    return force_interactive or not bpy.app.background


def channel() -> Channel:
    global _channel
    if _channel is None:
        _channel = Channel()
    return _channel


def check_online() -> None:
    """No request at all unless Blender allows online access."""
    if not bpy.app.online_access:
        hint = ("pass --online-mode before other arguments" if bpy.app.online_access_override
                else "turn on Preferences › System › Allow Online Access")
        raise errors.OfflineError(f"Online access is off: {hint}")


def connection_dict() -> dict:
    prefs = preferences.get()
    if prefs is None:
        raise errors.ConfigurationError("Flamenco Panel is not enabled")
    conn = preferences.connection(prefs)
    check_url(conn.url)
    return conn.to_dict()


def dispatch(op: str, args: dict, on_result: OnResult, on_error: OnError,
             on_progress: OnProgress | None = None) -> int:
    """Starts an operation. Returns the request id (0 when it already finished synchronously)."""
    try:
        check_online()
        conn = connection_dict()
    except errors.FlamencoError as ex:
        on_error(ex)
        return 0
    if not interactive():
        from ..core.client import Connection
        client = ManagerClient(Connection.from_dict(conn))
        try:
            result = operations.run(op, client, args, on_progress)
        except errors.FlamencoError as ex:
            on_error(ex)
        else:
            on_result(result)
        finally:
            client.close()
        return 0
    request_id = channel().send(op, conn, args)
    _callbacks[request_id] = (on_result, on_error, on_progress)
    return request_id


def abort(request_id: int) -> None:
    if _channel is not None:
        _channel.abort(request_id)


def busy() -> bool:
    return bool(_callbacks)


def pending(op: str) -> bool:
    """Whether a request for `op` is under way in the helper."""
    return _channel is not None and op in _channel.pending.values()


def drain() -> int:
    """Delivers what the helper sent; returns how many messages were handled."""
    if _channel is None:
        return 0
    messages = _channel.drain()
    for message in messages:
        request_id = message.get("id")
        callbacks = _callbacks.get(request_id)
        if callbacks is None:
            continue
        on_result, on_error, on_progress = callbacks
        kind = message["type"]
        try:
            if kind == "progress":
                if on_progress is not None:
                    on_progress(message.get("data") or {})
            elif kind == "result":
                del _callbacks[request_id]
                on_result(message.get("data") or {})
            elif kind == "error":
                del _callbacks[request_id]
                on_error(errors.FlamencoError.from_dict(message.get("error") or {}))
        except Exception as ex:  # a bug in a callback must not kill the timer
            print(f"Flamenco Panel: error while applying {kind}: {type(ex).__name__}: {ex}")
    return len(messages)


def _panel_in_use() -> bool:
    """True when some 3D View shows its sidebar with the Flamenco tab active."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type != 'VIEW_3D' or not area.spaces.active.show_region_ui:
                continue
            for region in area.regions:
                if region.type == 'UI' and getattr(region, "active_panel_category", "Flamenco") == "Flamenco":
                    return True
    return False


def tick() -> float:
    """The persistent timer: drain the helper, redraw, auto-refresh while the panel is in use.

    Nothing may escape: an exception would make Blender drop the timer, and with it every later result.
    """
    global _last_auto_refresh
    if bpy.app.is_job_running('RENDER'):
        return TICK_IDLE   # never touch data while Blender renders; answers wait in the pipe
    try:
        if drain():
            tag_redraw()
        from . import logview
        if logview.following and bpy.app.online_access:
            logview.poll()
        prefs = preferences.get()
        st = state.get()
        if prefs is not None and st is not None and prefs.refresh_interval > 0 and bpy.app.online_access:
            now = time.monotonic()
            if (not busy() and st.connection in {'CONNECTED', 'ERROR'}
                    and now - _last_auto_refresh >= prefs.refresh_interval and _panel_in_use()):
                _last_auto_refresh = now
                bpy.ops.flamenco_panel.refresh()
    except Exception as ex:   # reported in the panel by the operators; never fatal for the timer
        print(f"Flamenco Panel: {type(ex).__name__}: {ex}")
    return TICK_BUSY if busy() else TICK_IDLE


def tag_redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in {'VIEW_3D', 'TEXT_EDITOR', 'PREFERENCES'}:
                area.tag_redraw()


def start_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_IDLE, persistent=True)


def stop() -> None:
    global _channel
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    _callbacks.clear()
    if _channel is not None:
        _channel.stop()
        _channel = None
