# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene submission settings, with job-type settings generated from the Manager's job types.

Values live in the scene (saved with the file) as plain ID properties keyed by
job-type name and setting key, so they survive a Manager refresh and a
regenerated property class. The job type is stored by *name*, never as an enum
position (positions change meaning when the Manager's list changes).
"""
from __future__ import annotations

import os
import re

import bpy

from ..core import expressions, jobtypes

VALUES = "flamenco_panel_values"      # scene[VALUES][type][key] = value
MANUAL = "flamenco_panel_manual"      # scene[MANUAL][type][key] = 1: the user overrides the automatic value

# The Manager's job types and worker tags as last fetched (not saved): {name: JobType}
catalog: dict[str, jobtypes.JobType] = {}
worker_tags: list[dict] = []
farm_info: dict = {}     # {"shared_storage": {...}, "variables": {...}} for this platform
_enum_cache: list = []   # Blender needs enum item strings kept alive


def set_catalog(job_types: list[dict], tags: list[dict]) -> None:
    global catalog, worker_tags
    catalog = {t.name: t for t in jobtypes.parse_job_types({"job_types": job_types})}
    worker_tags = list(tags)
    regenerate(bpy.context.scene)


def prop_name(key: str) -> str:
    """A setting key as a valid, unique-enough RNA identifier (keys from the Manager can be anything)."""
    name = re.sub(r"\W", "_", key)
    return ("s_" + name)[:60]


def _scene_dict(scene, group: str, type_name: str):
    if group not in scene:
        scene[group] = {}
    if type_name not in scene[group]:
        scene[group][type_name] = {}
    return scene[group][type_name]


def stored(scene, type_name: str, key: str, default=None):
    try:
        return scene[VALUES][type_name][key]
    except (KeyError, TypeError):
        return default


def store(scene, type_name: str, key: str, value) -> None:
    _scene_dict(scene, VALUES, type_name)[key] = value


def is_manual(scene, type_name: str, key: str) -> bool:
    try:
        return bool(scene[MANUAL][type_name][key])
    except (KeyError, TypeError):
        return False


def set_manual(scene, type_name: str, key: str, manual: bool) -> None:
    _scene_dict(scene, MANUAL, type_name)[key] = int(manual)


def current_type(scene) -> jobtypes.JobType | None:
    props = getattr(scene, "flamenco_panel", None)
    return catalog.get(props.job_type) if props is not None else None


def _job_type_items(self, context):
    global _enum_cache
    items = [(name, t.label or name, t.description or name) for name, t in sorted(catalog.items())]
    props = context.scene.flamenco_panel if context and context.scene else None
    if props is not None and props.job_type and props.job_type not in catalog:
        items.append((props.job_type, f"{props.job_type} (gone from the Manager)", "This job type no longer exists"))
    _enum_cache = items or [("", "(refresh to load job types)", "")]
    return _enum_cache


def _get_job_type_enum(self) -> int:
    names = [item[0] for item in _job_type_items(self, bpy.context)]
    return names.index(self.job_type) if self.job_type in names else 0


def _set_job_type_enum(self, index: int) -> None:
    items = _job_type_items(self, bpy.context)
    if 0 <= index < len(items):
        self.job_type = items[index][0]
        regenerate(bpy.context.scene)


def _tag_items(self, context):
    global _tag_cache
    _tag_cache = [("", "All", "Any worker")] + [(t["id"], t["name"] or t["id"], t.get("description") or "")
                                               for t in worker_tags if t.get("id")]
    return _tag_cache


_tag_cache: list = []


def _get_tag(self) -> int:
    ids = [item[0] for item in _tag_items(self, bpy.context)]
    return ids.index(self.worker_tag) if self.worker_tag in ids else 0


def _set_tag(self, index: int) -> None:
    items = _tag_items(self, bpy.context)
    self.worker_tag = items[index][0] if 0 <= index < len(items) else ""


class FLAMENCO_PG_submit(bpy.types.PropertyGroup):
    job_name: bpy.props.StringProperty(name="Job Name", description="Empty: the blend file's name")
    job_type: bpy.props.StringProperty(name="Job Type", description="Name of the Manager's job type")
    job_type_enum: bpy.props.EnumProperty(name="Job Type", items=_job_type_items, get=_get_job_type_enum,
                                          set=_set_job_type_enum)
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)
    worker_tag: bpy.props.StringProperty(name="Worker Tag", description="UUID of the worker tag; empty: all")
    worker_tag_enum: bpy.props.EnumProperty(name="Worker Tag", items=_tag_items, get=_get_tag, set=_set_tag)
    submit_paused: bpy.props.BoolProperty(name="Submit Paused", description="Queue the job paused (Manager 3.6+)")


def _make_property(setting: jobtypes.JobSetting):
    """A bpy property whose value lives in the scene's ID properties (survives regeneration)."""
    kind = jobtypes.blender_property_kind(setting)
    key = setting.key
    label = setting.label or key
    description = (setting.description or setting.eval_description or label)[:400]

    def getter(self):
        scene = bpy.context.scene
        type_ = current_type(scene)
        value = stored(scene, type_.name if type_ else "", key, None)
        if value is None:
            value = jobtypes.default_value(setting)
        if value is None:
            value = jobtypes.empty_value(setting)
        if kind.kind == "ENUM":
            return kind.items.index(value) if value in kind.items else 0
        try:
            return jobtypes.coerce_value(setting, value)
        except jobtypes.SettingValueError:
            return jobtypes.empty_value(setting)

    def setter(self, value):
        scene = bpy.context.scene
        type_ = current_type(scene)
        if type_ is None:
            return
        if kind.kind == "ENUM":
            value = kind.items[value] if 0 <= value < len(kind.items) else ""
        store(scene, type_.name, key, value)

    common = {"name": label, "description": description, "get": getter, "set": setter}
    if kind.kind == "ENUM":
        return bpy.props.EnumProperty(items=[(c, c, "") for c in kind.items], **common)
    if kind.kind == "INT":
        return bpy.props.IntProperty(**{k: int(v) for k, v in kind.propargs.items()}, **common)
    if kind.kind == "FLOAT":
        return bpy.props.FloatProperty(**kind.propargs, **common)
    if kind.kind == "BOOL":
        return bpy.props.BoolProperty(**common)
    return bpy.props.StringProperty(subtype=kind.subtype or 'NONE', **common)


_generated: type | None = None


def regenerate(scene=None) -> None:
    """(Re)builds the property class for the scene's current job type. Values are untouched."""
    global _generated
    job_type = current_type(scene or bpy.context.scene)
    annotations = {}
    if job_type is not None:
        for setting in job_type.settings:
            try:
                annotations[prop_name(setting.key)] = _make_property(setting)
            except (TypeError, ValueError) as ex:   # a job type we cannot map must not break the panel
                print(f"Flamenco Panel: setting {setting.key!r} of {job_type.name!r} skipped: {ex}")
    cls = type("FLAMENCO_PG_job_settings", (bpy.types.PropertyGroup,), {"__annotations__": annotations})
    _drop_generated()
    bpy.utils.register_class(cls)
    bpy.types.WindowManager.flamenco_panel_job_settings = bpy.props.PointerProperty(type=cls)
    _generated = cls


def _drop_generated() -> None:
    global _generated
    if _generated is not None:
        if hasattr(bpy.types.WindowManager, "flamenco_panel_job_settings"):
            del bpy.types.WindowManager.flamenco_panel_job_settings
        bpy.utils.unregister_class(_generated)
        _generated = None


def evaluate_all(context, job_type: jobtypes.JobType, job_name: str, overrides: dict | None = None) -> dict:
    """One value per setting, in the type's order (later expressions read `settings.<earlier>`):
    an override if given, else the automatic value (evaluated safely), else the stored/default one."""
    scene = context.scene
    overrides = overrides or {}
    values: dict = {}
    names = expressions.standard_names(context, bpy, job_name, values, bpy.path.abspath, bpy.data.filepath)
    for setting in job_type.settings:
        manual = setting.eval_show_link_button and is_manual(scene, job_type.name, setting.key)
        if setting.key in overrides:
            values[setting.key] = jobtypes.coerce_value(setting, overrides[setting.key])
        elif setting.eval and not manual:
            value = expressions.evaluate(setting.eval, names, setting.key)
            values[setting.key] = str(value) if isinstance(value, os.PathLike) else value
        else:
            value = stored(scene, job_type.name, setting.key, None)
            values[setting.key] = jobtypes.default_value(setting) if value is None else value
    return values


def register() -> None:
    bpy.utils.register_class(FLAMENCO_PG_submit)
    bpy.types.Scene.flamenco_panel = bpy.props.PointerProperty(type=FLAMENCO_PG_submit)


def unregister() -> None:
    _drop_generated()
    if hasattr(bpy.types.Scene, "flamenco_panel"):
        del bpy.types.Scene.flamenco_panel
    bpy.utils.unregister_class(FLAMENCO_PG_submit)
    catalog.clear()
    worker_tags.clear()
