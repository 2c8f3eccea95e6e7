# SPDX-License-Identifier: GPL-3.0-or-later
"""Submitting the current scene: the main-thread snapshot, then the helper does the heavy work.

What is submitted is what the artist sees now (unsaved changes included): a
copy is saved with `save_as_mainfile(copy=True)`, which never touches the
artist's file. One submission at a time: a second click while one is in
flight does nothing.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib

import bpy

from ..core import errors, expressions, jobtypes, paths, submission, submitting
from . import addon, preferences, runtime, settings, state

_in_flight: dict = {}     # {"request_id": int, "retried": bool} while a submission runs
_last_result: dict = {}


def in_flight() -> bool:
    return bool(_in_flight)


def forget() -> None:
    """On unregister: a submission whose helper is gone is no longer in flight; its temporary copy goes."""
    if "snap" in _in_flight:
        _remove_temporary_copy(_in_flight["snap"], _in_flight["mode"])
    _in_flight.clear()
    _last_result.clear()


def _extension_version() -> str:
    try:
        import tomllib
        manifest = pathlib.Path(__file__).resolve().parents[1] / "blender_manifest.toml"
        return tomllib.loads(manifest.read_text(encoding="utf-8")).get("version", "")
    except (OSError, ValueError):
        return ""


def _copy_path(original: str, mode: str, stamp: str) -> str:
    """Where the farm copy is saved: kept next to the file in shared storage, else a hidden temp name."""
    folder, name = os.path.split(original)
    stem = os.path.splitext(name)[0]
    if mode == "in_place":
        return os.path.join(folder, f"{stem}.flamenco-{stamp}.blend")
    return os.path.join(folder, f".{stem}.flamenco-{stamp}.blend")


def expected_files() -> list[str]:
    """What Blender itself knows the file uses, to cross-check BAT's findings."""
    try:
        found = bpy.utils.blend_paths(absolute=True, packed=False, local=False)
    except TypeError:
        found = bpy.utils.blend_paths(absolute=True)
    for image in bpy.data.images:
        if image.library is not None and image.filepath and not image.packed_file:
            found.append(bpy.path.abspath(image.filepath, library=image.library))
    # Blender's own bundled assets (e.g. 5.0's essentials brushes) come with Blender on the farm too.
    bundled = [os.path.normpath(p) for p in (bpy.utils.resource_path('LOCAL'), bpy.utils.resource_path('SYSTEM'),
                                             os.path.dirname(bpy.app.binary_path or "")) if p]
    return sorted({os.path.normpath(p) for p in found
                   if p and not any(os.path.normpath(p).startswith(root + os.sep) for root in bundled)})


def file_is_dirty() -> bool:
    """Whether the scene has unsaved changes (always True in module mode, where bpy never clears it)."""
    return bpy.data.is_dirty


def prepare(context, job_type_name: str, job_name: str, priority: int, overrides: dict) -> tuple:
    """(Snapshot of the artist's file as it is, mode): settings evaluated once, nothing written."""
    prefs = preferences.get()
    props = context.scene.flamenco_panel
    original = bpy.data.filepath
    platform = paths.submitter_platform()
    job_name = (job_name or props.job_name or pathlib.Path(original).stem).strip()
    submission.check_submittable(job_name, original, platform, prefs.user_name)
    job_type = settings.catalog.get(job_type_name or props.job_type)
    if job_type is None:
        name = job_type_name or props.job_type
        raise errors.ConfigurationError(f"Job type \"{name}\" is not available on the Manager; refresh and pick "
                                        "another" if name else "Pick a job type (refresh to load them)")
    unknown = [key for key in overrides if jobtypes.find_setting(job_type, key) is None]
    if unknown:
        raise errors.ConfigurationError(f"Job type \"{job_type.name}\" has no setting {unknown[0]!r}")
    settings.ensure_class(context.scene, job_type)
    try:
        values = settings.evaluate_all(context, job_type, job_name, overrides)
    except (expressions.ExpressionError, jobtypes.SettingValueError) as ex:
        raise errors.ConfigurationError(str(ex)) from None
    if jobtypes.find_setting(job_type, "blendfile") is not None:
        values["blendfile"] = original   # replaced by where the farm finds the file (packed, in place, Shaman)
    final = submission.final_settings(job_type, values)
    storage = settings.farm_info.get("shared_storage", {})
    if jobtypes.find_setting(job_type, "blendfile") is None:
        mode = "none"   # the job type renders no file (e.g. echo-sleep-test): nothing to send to the farm
    else:
        mode = submitting.plan_mode(original, storage.get("location", ""), bool(storage.get("shaman_enabled")),
                                    platform)
    snap = submission.Snapshot(
        job_name=job_name, job_type=job_type.name, type_etag=job_type.etag, settings=final,
        priority=priority if priority >= 0 else props.priority, platform=platform, blendfile=original,
        original_blendfile=original, project_root=paths.find_project_root(original),
        metadata=submission.metadata(prefs.user_name, prefs.user_email, original, bpy.app.version_string,
                                     _extension_version()),
        worker_tag=props.worker_tag, paused=props.submit_paused, expected_files=expected_files())
    return snap, mode


def take_snapshot(context, job_type_name: str, job_name: str, priority: int, overrides: dict) -> tuple:
    """(Snapshot, mode): what is packed and what is submitted come from this one snapshot."""
    snap, mode = prepare(context, job_type_name, job_name, priority, overrides)
    if file_is_dirty() and mode != "none":
        # Unsaved changes: the farm gets a copy with them; the artist's file is never written.
        snap.blendfile = _copy_path(snap.original_blendfile, mode, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        bpy.ops.wm.save_as_mainfile(filepath=snap.blendfile, copy=True, check_existing=False)
    # else: saved as it is, so used as is (identical bytes: Shaman re-uploads nothing)
    return snap, mode


def check(op, context) -> set:
    """Asks the Manager whether it would accept the job as the panel describes it; sends no job."""
    try:
        runtime.check_online()
        if not settings.catalog:
            if runtime.interactive():
                raise errors.ConfigurationError("Job types are not loaded yet: press Refresh first")
            load_catalog_now()
        snap, _mode = prepare(context, "", "", -1, {})
    except (errors.FlamencoError, paths.PathRuleError) as ex:
        op.report({'ERROR'}, str(ex))
        return {'CANCELLED'}
    from .operators import run
    job = submission.submitted_job(snap, snap.original_blendfile)
    return run(op, "check", {"job": job}, lambda st, data: f"The Manager accepts job \"{snap.job_name}\"")


def execute(op, context) -> set:
    if in_flight():
        op.report({'WARNING'}, "A submission is already in progress")
        return {'CANCELLED'}
    try:
        overrides = json.loads(op.settings) if op.settings.strip() else {}
        if not isinstance(overrides, dict):
            raise ValueError("not an object")
    except ValueError as ex:
        op.report({'ERROR'}, f"settings must be a JSON object of overrides ({ex})")
        return {'CANCELLED'}
    try:
        runtime.check_online()
        if not settings.catalog or (op.job_type and op.job_type not in settings.catalog):
            if runtime.interactive():
                raise errors.ConfigurationError("Job types are not loaded yet: press Refresh first")
            load_catalog_now()
        snap, mode = take_snapshot(context, op.job_type, op.job_name, op.priority, overrides)
    except (errors.FlamencoError, paths.PathRuleError) as ex:
        op.report({'ERROR'}, str(ex))
        return {'CANCELLED'}
    except RuntimeError as ex:   # saving the farm copy failed (e.g. a read-only folder)
        op.report({'ERROR'}, f"Could not save a copy of the file for the farm: {ex}")
        return {'CANCELLED'}
    return _dispatch(op, context, snap, mode, overrides, retried=False)


def _dispatch(op, context, snap, mode, overrides, retried: bool) -> set:
    outcome: dict = {}

    def done(data: dict) -> None:
        st = state.get()   # looked up now: a file load in between frees structs captured earlier
        _in_flight.clear()
        _last_result.clear()
        _last_result.update(data)
        job = data.get("job", {})
        st.submit_progress, st.submit_status = 0.0, ""
        _status_bar(None)
        message = f"Submitted \"{job.get('name', '')}\" ({job.get('id', '')[:8]})"
        if data.get("mode") == "shaman":
            message += f", uploaded {data.get('bytes_uploaded', 0)} bytes"
        st.last_submitted_id = job.get("id", "")
        st.notice = message
        outcome["message"] = message
        state.select_after_refresh = st.last_submitted_id
        if runtime.interactive():
            from .operators import notify
            notify(message)
        try:
            bpy.ops.flamenco_panel.refresh()   # the new job shows up selected in the list
        except RuntimeError:
            pass   # the job was submitted; a failed refresh must not make it look otherwise

    def failed(ex: errors.FlamencoError) -> None:
        st = state.get()
        _in_flight.clear()
        _remove_temporary_copy(snap, mode)   # normally the helper does; not if it died
        st.submit_progress, st.submit_status = 0.0, ""
        _status_bar(None)
        if isinstance(ex, errors.JobTypeStale) and not retried:
            # The job type changed on the Manager: fetch it, re-evaluate, and check once more.
            outcome["stale"] = True
            if runtime.interactive():
                _in_flight["retrying"] = True   # a click meanwhile must not start a second submission
                st.submit_status = "retrying"
                _retry_interactive(snap, overrides)
            return
        st.message = ex.message
        outcome["error"] = ex
        if runtime.interactive():
            from .operators import notify
            notify(ex.message, 'ERROR')

    def progressed(data: dict) -> None:
        st = state.get()
        st.submit_status = str(data.get("phase", ""))
        total = data.get("bytes_total") or data.get("files_total") or 0
        done_ = data.get("bytes_done") if data.get("bytes_total") else data.get("files_done")
        st.submit_progress = min(1.0, float(done_ or 0) / total) if total else 0.0
        files = f", {data.get('files_done', 0)}/{data['files_total']} files" if data.get("files_total") else ""
        _status_bar(f"Flamenco: {st.submit_status}{files} ({st.submit_progress:.0%})")

    args = {"snapshot": snap.to_dict(), "mode": mode, "user_dir": addon.user_path()}
    _in_flight.update(retried=retried, snap=snap, mode=mode)
    request_id = runtime.dispatch("submit", args, done, failed, progressed)
    if request_id:
        _in_flight["request_id"] = request_id
        state.get().submit_status = "starting"
        return {'FINISHED'}
    if outcome.get("stale"):
        try:
            load_catalog_now()
            snap, mode = take_snapshot(bpy.context, snap.job_type, snap.job_name, snap.priority, overrides)
        except errors.FlamencoError as ex:
            return _report(op, 'ERROR', ex.message)
        return _dispatch(op, bpy.context, snap, mode, overrides, retried=True)
    if "error" in outcome:
        return _report(op, 'ERROR', outcome["error"].message)
    return _report(op, 'INFO', outcome.get("message", "Submitted"))


def _report(op, level: str, message: str) -> set:
    """The operator's report (op is None when a retry runs from the timer, which notifies instead)."""
    if op is not None:
        op.report({level}, message)
    return {'CANCELLED'} if level == 'ERROR' else {'FINISHED'}


def _status_bar(text: str | None) -> None:
    """Submission progress in the status bar too (None clears it); nothing to show in background mode."""
    workspace = getattr(bpy.context, "workspace", None)
    if workspace is not None and not bpy.app.background:
        workspace.status_text_set(text)


def _remove_temporary_copy(snap, mode: str) -> None:
    """The hidden copy saved for packing; an in-place copy may already be used by a job, so it stays."""
    if mode != "in_place" and snap.blendfile != snap.original_blendfile and os.path.isfile(snap.blendfile):
        os.remove(snap.blendfile)


def _retry_interactive(snap, overrides) -> None:
    def given_up(message: str) -> None:
        from .operators import notify
        _in_flight.clear()
        state.get().submit_status = ""
        notify(message, 'ERROR')

    def reloaded(data: dict) -> None:
        apply_catalog(data)
        try:
            new_snap, mode = take_snapshot(bpy.context, snap.job_type, snap.job_name, snap.priority, overrides)
        except (errors.FlamencoError, paths.PathRuleError, RuntimeError) as ex:
            given_up(str(ex))
            return
        _in_flight.clear()
        _dispatch(None, bpy.context, new_snap, mode, overrides, retried=True)

    def failed(ex: errors.FlamencoError) -> None:
        given_up(ex.message)

    runtime.dispatch("catalog", {"platform": snap.platform}, reloaded, failed)


def abort() -> bool:
    request_id = _in_flight.get("request_id")
    if request_id:
        runtime.abort(request_id)
        return True
    return False


def load_catalog_now() -> None:
    """Background mode: fetch job types, tags and shared storage synchronously."""
    result: dict = {}
    runtime.dispatch("catalog", {"platform": paths.submitter_platform()}, result.update,
                     lambda ex: result.update(error=ex))
    if "error" in result:
        raise result["error"]
    apply_catalog(result)


def apply_catalog(data: dict) -> None:
    settings.farm_info.clear()
    settings.farm_info.update(shared_storage=data.get("shared_storage", {}), variables=data.get("variables", {}))
    settings.set_catalog(data.get("job_types", []), data.get("tags", []))
