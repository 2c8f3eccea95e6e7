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
import types

import bpy

from ..core import expressions, jobtypes

MANUAL = "flamenco_panel_manual"      # scene[MANUAL][type][key] = 1: the user overrides the automatic value

# The Manager's job types and worker tags as last fetched (not saved): {name: JobType}
catalog: dict[str, jobtypes.JobType] = {}
worker_tags: list[dict] = []
farm_info: dict = {}     # {"shared_storage": {...}, "variables": {...}} for this platform


def set_catalog(job_types: list[dict], tags: list[dict]) -> None:
    global catalog, worker_tags
    catalog = {t.name: t for t in jobtypes.parse_job_types({"job_types": job_types})}
    worker_tags = list(tags)
    sync_scene(bpy.context.scene)


def sync_scene(scene) -> None:
    """Enum lists, the enums' shown values and the settings class, for this scene's stored choices."""
    props = getattr(scene, "flamenco_panel", None)
    chosen = props.job_type if props is not None else ""
    _type_items[:] = [(name, t.label or name, t.description or name) for name, t in sorted(catalog.items())]
    if chosen and chosen not in catalog:
        _type_items.append((chosen, f"{chosen} (gone from the Manager)", "This job type no longer exists"))
    if not _type_items:
        _type_items.append((NO_TYPE, "(refresh to load job types)", ""))
    _tag_items_list[:] = [(ALL_TAGS, "All", "Any worker")] + [
        (t["id"], t.get("name") or t["id"], t.get("description") or "") for t in worker_tags if t.get("id")]
    if props is not None:
        _syncing[0] = True
        try:
            if chosen and any(item[0] == chosen for item in _type_items):
                props.job_type_enum = chosen
            tag = props.worker_tag or ALL_TAGS
            if any(item[0] == tag for item in _tag_items_list):
                props.worker_tag_enum = tag
        finally:
            _syncing[0] = False
    regenerate(scene)


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


# Enum items live as long as the module: Blender keeps pointers to their strings. An empty
# identifier would make an item a separator, hence the two placeholders.
NO_TYPE, ALL_TAGS = "__none__", "__all__"
_type_items: list = [(NO_TYPE, "(refresh to load job types)", "")]
_tag_items_list: list = [(ALL_TAGS, "All", "Any worker")]
_syncing = [False]


def _job_type_items(self, context):
    return _type_items


def _tag_items(self, context):
    return _tag_items_list


def _job_type_chosen(self, context) -> None:
    """The enum only picks; the choice is stored by name (enum positions change with the Manager's list)."""
    if not _syncing[0] and self.job_type_enum != NO_TYPE:
        self.job_type = self.job_type_enum
        regenerate(context.scene)


def _tag_chosen(self, context) -> None:
    if not _syncing[0]:
        self.worker_tag = "" if self.worker_tag_enum == ALL_TAGS else self.worker_tag_enum


class FLAMENCO_PG_submit(bpy.types.PropertyGroup):
    job_name: bpy.props.StringProperty(name="Job Name", description="Empty: the blend file's name")
    job_type: bpy.props.StringProperty(name="Job Type", description="Name of the Manager's job type")
    job_type_enum: bpy.props.EnumProperty(name="Job Type", items=_job_type_items, update=_job_type_chosen)
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)
    worker_tag: bpy.props.StringProperty(name="Worker Tag", description="UUID of the worker tag; empty: all")
    worker_tag_enum: bpy.props.EnumProperty(name="Worker Tag", items=_tag_items, update=_tag_chosen)
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
_generated_for = [""]   # the job type the generated class describes


def ensure_class(scene, job_type: jobtypes.JobType) -> None:
    """Makes the generated class describe `job_type`, so stored values are read for the right settings."""
    if _generated is None or _generated_for[0] != job_type.name:
        regenerate(scene, job_type)


def holder(scene):
    """The scene's job-type settings (values saved with the scene; same-named settings share a value)."""
    return getattr(scene, "flamenco_panel_job_settings", None)


def regenerate(scene=None, job_type: jobtypes.JobType | None = None) -> None:
    """(Re)builds the property class for a job type (default: the scene's). Stored values stay in the scene."""
    global _generated
    job_type = job_type or current_type(scene or bpy.context.scene)
    _generated_for[0] = job_type.name if job_type is not None else ""
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


def _expression_roots(context) -> tuple:
    """What job-type expressions may see as `C` and `bpy`: the scene and the file's path, nothing else."""
    c = types.SimpleNamespace(scene=context.scene)
    bpy_view = types.SimpleNamespace(context=c, data=types.SimpleNamespace(filepath=bpy.data.filepath),
                                     app=types.SimpleNamespace(version=bpy.app.version,
                                                               version_string=bpy.app.version_string))
    return c, bpy_view


def evaluate_all(context, job_type: jobtypes.JobType, job_name: str, overrides: dict | None = None) -> dict:
    """One value per setting, in the type's order (later expressions read `settings.<earlier>`):
    an override if given, else the automatic value (evaluated safely), else the stored/default one."""
    scene = context.scene
    overrides = overrides or {}
    values: dict = {}
    names = expressions.standard_names(*_expression_roots(context), job_name, values, bpy.path.abspath,
                                       bpy.data.filepath)
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
    farm_info.clear()
