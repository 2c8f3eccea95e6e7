# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene submission settings, with job-type settings generated from the Manager's job types.

Values live in the scene (saved with the file) under the setting's key, so they
survive a Manager refresh and a regenerated property class. The job type is
stored by *name*, never as an enum position (positions change meaning when the
Manager's list changes).
"""
from __future__ import annotations

import os
import re

import bpy

from ..core import expressions, jobtypes

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
    """A plain bpy property for one setting (no get/set callbacks: bpy 4.2 crashes at exit with those)."""
    kind = jobtypes.blender_property_kind(setting)
    label = setting.label or setting.key
    common = {"name": label, "description": (setting.description or setting.eval_description or label)[:400]}
    default = jobtypes.default_value(setting)
    if default is None:
        default = jobtypes.empty_value(setting)
    if kind.kind == "ENUM":
        return bpy.props.EnumProperty(items=[(c, c, "") for c in kind.items], default=default or kind.items[0],
                                      **common)
    if kind.kind == "INT":
        return bpy.props.IntProperty(default=int(default), **{k: int(v) for k, v in kind.propargs.items()}, **common)
    if kind.kind == "FLOAT":
        return bpy.props.FloatProperty(default=float(default), **kind.propargs, **common)
    if kind.kind == "BOOL":
        return bpy.props.BoolProperty(default=bool(default), **common)
    return bpy.props.StringProperty(default=str(default), subtype=kind.subtype or 'NONE', **common)


_generated: type | None = None


def holder(scene):
    """The scene's job-type settings (values saved with the scene; same-named settings share a value)."""
    return getattr(scene, "flamenco_panel_job_settings", None)


def regenerate(scene=None) -> None:
    """(Re)builds the property class for the scene's current job type. Stored values stay in the scene."""
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
    bpy.types.Scene.flamenco_panel_job_settings = bpy.props.PointerProperty(type=cls)
    _generated = cls


def _drop_generated() -> None:
    global _generated
    if _generated is not None:
        if hasattr(bpy.types.Scene, "flamenco_panel_job_settings"):
            del bpy.types.Scene.flamenco_panel_job_settings
        bpy.utils.unregister_class(_generated)
        _generated = None


def stored(scene, key: str):
    """The value the panel holds for a setting (its default when never set); None if not shown there."""
    values = holder(scene)
    name = prop_name(key)
    return getattr(values, name) if values is not None and hasattr(values, name) else None


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
            value = stored(scene, setting.key)
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
