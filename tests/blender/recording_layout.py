# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for bpy's UILayout that records what draw() puts in it (module mode cannot show panels)."""
from __future__ import annotations

import types


class OperatorProps:
    def __init__(self, idname: str) -> None:
        self.idname = idname


class RecordingLayout:
    def __init__(self, log: list | None = None) -> None:
        self.log = log if log is not None else []
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = True
        self.active = True
        self.alert = False
        self.scale_y = 1.0

    def _child(self, kind: str, **kw) -> "RecordingLayout":
        self.log.append((kind, kw))
        return RecordingLayout(self.log)

    row = lambda self, **kw: self._child("row", **kw)
    column = lambda self, **kw: self._child("column", **kw)
    box = lambda self, **kw: self._child("box", **kw)
    split = lambda self, **kw: self._child("split", **kw)
    grid_flow = lambda self, **kw: self._child("grid_flow", **kw)

    def panel(self, idname, default_closed=False):
        header, body = RecordingLayout(self.log), RecordingLayout(self.log)
        self.log.append(("panel", {"idname": idname}))
        return header, body

    def label(self, text="", icon='NONE', **kw):
        self.log.append(("label", {"text": text, "icon": icon}))

    def prop(self, data, prop, **kw):
        assert hasattr(data, prop), f"draw() shows a property that does not exist: {prop}"
        self.log.append(("prop", {"prop": prop, **kw}))

    def operator(self, idname, **kw):
        self.log.append(("operator", {"idname": idname, **kw}))
        return OperatorProps(idname)

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kw):
        assert hasattr(data, prop) and hasattr(active_data, active_prop)
        self.log.append(("template_list", {"type": list_type, "prop": prop}))

    def progress(self, factor=0.0, text="", **kw):
        self.log.append(("progress", {"factor": factor, "text": text}))

    def separator(self, **kw):
        self.log.append(("separator", {}))

    def template_icon(self, icon_value=0, scale=1.0):
        self.log.append(("template_icon", {"icon_value": icon_value}))

    # --- queries for tests ---
    def texts(self) -> list[str]:
        return [kw["text"] for kind, kw in self.log if kind == "label"]

    def operators(self) -> list[str]:
        return [kw["idname"] for kind, kw in self.log if kind == "operator"]

    def has_text(self, fragment: str) -> bool:
        return any(fragment in text for text in self.texts())


def draw_panel(panel_cls, context) -> RecordingLayout:
    """Calls panel_cls.draw with a recording layout, as Blender would (poll first)."""
    layout = RecordingLayout()
    if hasattr(panel_cls, "poll") and not panel_cls.poll(context):
        layout.log.append(("hidden", {}))
        return layout
    panel_cls.draw(types.SimpleNamespace(layout=layout), context)
    return layout


def shown_jobs(st, context=None):
    """Names as the jobs UIList shows them: filtered, in display order."""
    import bpy
    ul = bpy.types.FLAMENCO_UL_jobs
    context = context or bpy.context
    flags, order = ul.filter_items(_FakeList(), context, st, "jobs")
    positions = order or list(range(len(flags)))
    shown = sorted((positions[i], job.name) for i, (job, flag) in enumerate(zip(st.jobs, flags)) if flag)
    return [name for _, name in shown]


class _FakeList:
    filter_name = ""
    status_filter = ""
    bitflag_filter_item = 1 << 30
