# SPDX-License-Identifier: GPL-3.0-or-later
"""One small operator per action. Interactive → helper process; background → runs to the end.

In background mode (scripts, CLI) a failure is reported as an ERROR, which
`bpy.ops` turns into a RuntimeError carrying the user-facing message.
"""
from __future__ import annotations

import os
import webbrowser
from urllib.parse import quote

import bpy

from ..core import errors, paths, rules
from ..core.models import Job
from . import logview, preferences, runtime, settings, state


def _report_error(op, ex: errors.FlamencoError) -> set:
    op.report({'ERROR'}, ex.message)
    return {'CANCELLED'}


def notify(message: str, level: str = 'INFO') -> None:
    """A status-bar report from code that runs outside an operator (the timer)."""
    st = state.get()
    if st is not None:
        st.notice = message[:500]
    try:
        bpy.ops.flamenco_panel.notify(message=message[:500], level=level)
    except RuntimeError:
        pass  # an ERROR level report raises in background mode; the notice above stays
    print(f"Flamenco Panel: {message}")


def _finish(op, request_id: int, outcome: dict) -> set:
    """Operator return value: interactive requests are under way; synchronous ones are done."""
    if request_id:
        return {'FINISHED'}
    if "error" in outcome:
        return _report_error(op, outcome["error"])
    if outcome.get("message"):
        op.report({'INFO'}, outcome["message"])
    return {'FINISHED'}


def run(op, name: str, args: dict, on_result, on_error=None) -> set:
    """Dispatches `name`; `on_result(state, data) -> message` applies the result to the state.

    Callbacks look the state up when they run: a file load in between replaces the window
    manager, and a struct captured earlier would be freed memory.
    """
    outcome: dict = {}

    def done(data: dict) -> None:
        message = on_result(state.get(), data)
        outcome["message"] = message
        if message and runtime.interactive():
            notify(message)

    def failed(ex: errors.FlamencoError) -> None:
        outcome["error"] = ex
        st = state.get()
        if st is not None:
            if isinstance(ex, errors.OfflineError):
                st.connection, st.message = 'OFFLINE', ex.message
            elif isinstance(ex, errors.ConfigurationError) and "URL" in ex.message:
                st.connection, st.message = 'UNCONFIGURED', ex.message
            elif not isinstance(ex, errors.ActionNotAllowed):
                state.apply_error(st, ex.message)
            else:
                st.message = ex.message
        if on_error is not None:
            on_error(ex)
        if runtime.interactive() and not isinstance(ex, (errors.OfflineError,)):
            notify(ex.message, 'ERROR')

    request_id = runtime.dispatch(name, args, done, failed)
    st = state.get()
    if request_id and st is not None and name in ("ping", "refresh") and st.connection != 'CONNECTED':
        st.connection = 'CONNECTING'
    return _finish(op, request_id, outcome)


class FLAMENCO_OT_notify(bpy.types.Operator):
    """Show a message in the status bar"""
    bl_idname = "flamenco_panel.notify"
    bl_label = "Flamenco Notification"
    bl_options = {'INTERNAL'}

    message: bpy.props.StringProperty()
    level: bpy.props.EnumProperty(items=[('INFO', "Info", ""), ('WARNING', "Warning", ""), ('ERROR', "Error", "")])

    def execute(self, context):
        self.report({self.level}, self.message)
        return {'FINISHED'}


class FLAMENCO_OT_ping(bpy.types.Operator):
    """Contact the Manager and show its name, version and farm status"""
    bl_idname = "flamenco_panel.ping"
    bl_label = "Test Connection"

    def execute(self, context):
        def applied(st, data: dict) -> str:
            version = data.get("version", {})
            st.manager_name = version.get("name", "")
            st.manager_version = version.get("shortversion", "") or version.get("version", "")
            st.farm_status = data.get("farm_status", "")
            st.connection, st.message = 'CONNECTED', ""
            caps = data.get("capabilities", {})
            if caps.get("spec_known"):
                st.can_pause = "pause-requested" in caps.get("job_statuses", ())
            return f"Connected to {st.manager_name or 'Flamenco Manager'} {st.manager_version}, farm {st.farm_status}"

        return run(self, "ping", {}, applied)


class FLAMENCO_OT_refresh(bpy.types.Operator):
    """Fetch jobs, workers and the selected job's tasks from the Manager"""
    bl_idname = "flamenco_panel.refresh"
    bl_label = "Refresh"

    def execute(self, context):
        st = state.get(context)
        if runtime.pending("refresh"):
            return {'FINISHED'}   # one at a time: answers arriving out of order would undo newer data
        selected = state.selected_job(st)

        def applied(st, data: dict) -> str:
            prefs = preferences.get()
            finished = state.apply_refresh(st, data, prefs.user_name if prefs else "")
            for row in finished:
                name, status = row[1], row[2]
                notify(f"Job \"{name}\" {status}", 'WARNING' if status == "failed" else 'INFO')
            return ""

        args = {"job_id": selected.id if selected else "", "compact": True, "rows_digest": state.rows_digest(st)}
        result = run(self, "refresh", args, applied)
        if not settings.catalog and st.connection != 'OFFLINE' and not runtime.pending("catalog"):
            load_catalog(self)
        return result


def load_catalog(op) -> set:
    """Job types, worker tags and shared storage for the submit panel."""
    from .submit import apply_catalog

    def applied(st, data: dict) -> str:
        apply_catalog(data)
        return ""

    return run(op, "catalog", {"platform": paths.submitter_platform()}, applied)


class FLAMENCO_OT_load_job_types(bpy.types.Operator):
    """Fetch the Manager's job types, worker tags and shared storage"""
    bl_idname = "flamenco_panel.load_job_types"
    bl_label = "Load Job Types"

    def execute(self, context):
        return load_catalog(self)


class FLAMENCO_OT_check_job(bpy.types.Operator):
    """Ask the Manager whether it would accept this job, without submitting it"""
    bl_idname = "flamenco_panel.check_job"
    bl_label = "Check"

    def execute(self, context):
        from . import submit
        return submit.check(self, context)


class FLAMENCO_OT_abort_submit(bpy.types.Operator):
    """Stop the submission in progress; nothing is submitted"""
    bl_idname = "flamenco_panel.abort_submit"
    bl_label = "Abort Submission"

    def execute(self, context):
        from . import submit
        if not submit.abort():
            self.report({'INFO'}, "No submission in progress")
        return {'FINISHED'}


class FLAMENCO_OT_toggle_auto(bpy.types.Operator):
    """Switch this setting between its automatic value and one you type"""
    bl_idname = "flamenco_panel.toggle_auto"
    bl_label = "Automatic Value"
    bl_options = {'INTERNAL', 'UNDO'}

    key: bpy.props.StringProperty()

    def execute(self, context):
        job_type = settings.current_type(context.scene)
        if job_type is None:
            return {'CANCELLED'}
        manual = settings.is_manual(context.scene, job_type.name, self.key)
        settings.set_manual(context.scene, job_type.name, self.key, not manual)
        return {'FINISHED'}


def _job_item(st, job_id: str):
    if not job_id:
        return state.selected_job(st)
    return next((job for job in st.jobs if job.id == job_id), None)


class _JobAction:
    """Cancel / pause / requeue / delete, refused locally (nothing sent) when the rules say no."""
    bl_options = {'REGISTER'}
    action = ""
    job_id: bpy.props.StringProperty(name="Job ID", description="Empty: the selected job")

    def execute(self, context):
        st = state.get(context)
        prefs = preferences.get()
        user_name = prefs.user_name if prefs else ""
        allow_others = bool(prefs and prefs.allow_others)
        item = _job_item(st, self.job_id)
        if item is None and not self.job_id:
            self.report({'ERROR'}, "No job selected")
            return {'CANCELLED'}
        if item is not None:
            job = Job(id=item.id, name=item.name, status=item.status,
                      metadata={"user.name": item.user_name} if item.user_name else {})
            try:
                rules.check_job_action(self.action, job, user_name, allow_others=allow_others,
                                       can_pause=st.can_pause)
            except errors.ActionNotAllowed as ex:
                st.message = ex.message
                return _report_error(self, ex)
        job_id = item.id if item is not None else self.job_id

        def applied(st, data: dict) -> str:
            if data.get("action") == "delete":
                state.remove_job(st, data["job_id"])
                return f"Deleting job \"{data.get('job_name', '')}\""
            state.apply_job_status(st, data["job_id"], data["status"])
            return f"Job \"{data.get('job_name', '')}\": {data['status']}"

        return run(self, "job_action", {"job_id": job_id, "action": self.action, "user_name": user_name,
                                        "allow_others": allow_others}, applied)


class FLAMENCO_OT_cancel_job(_JobAction, bpy.types.Operator):
    """Cancel the job (its queued and running tasks stop)"""
    bl_idname = "flamenco_panel.cancel_job"
    bl_label = "Cancel Job"
    action = "cancel"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)


class FLAMENCO_OT_pause_job(_JobAction, bpy.types.Operator):
    """Pause the job; running tasks finish first"""
    bl_idname = "flamenco_panel.pause_job"
    bl_label = "Pause Job"
    action = "pause"


class FLAMENCO_OT_requeue_job(_JobAction, bpy.types.Operator):
    """Requeue or resume the job"""
    bl_idname = "flamenco_panel.requeue_job"
    bl_label = "Requeue Job"
    action = "requeue"


class FLAMENCO_OT_delete_job(_JobAction, bpy.types.Operator):
    """Delete the job and its files on the Manager"""
    bl_idname = "flamenco_panel.delete_job"
    bl_label = "Delete Job"
    action = "delete"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)


class FLAMENCO_OT_set_worker_status(bpy.types.Operator):
    """Ask a worker to wake up, sleep, go offline or restart"""
    bl_idname = "flamenco_panel.set_worker_status"
    bl_label = "Set Worker Status"

    worker_id: bpy.props.StringProperty(name="Worker ID", description="Empty: the selected worker")
    status: bpy.props.StringProperty(name="Status", description="awake, asleep, offline or restart")
    lazy: bpy.props.BoolProperty(name="Lazy", default=True, description="Wait for the current task to finish")

    def invoke(self, context, event):
        if self.status == "offline":
            return context.window_manager.invoke_confirm(self, event)
        return self.execute(context)

    def execute(self, context):
        st = state.get(context)
        worker_id = self.worker_id
        if not worker_id and 0 <= st.active_worker_index < len(st.workers):
            worker_id = st.workers[st.active_worker_index].id
        if not worker_id:
            self.report({'ERROR'}, "No worker selected")
            return {'CANCELLED'}
        try:
            rules.check_worker_status(self.status)
        except errors.ActionNotAllowed as ex:
            return _report_error(self, ex)

        def applied(st, data: dict) -> str:
            state.apply_worker_status(st, data["worker_id"], data["status"])
            return f"Worker \"{data.get('worker_name', '')}\": {data['status']}" + (" (lazy)" if data["lazy"] else "")

        return run(self, "worker_status", {"worker_id": worker_id, "status": self.status, "lazy": self.lazy},
                   applied)


class FLAMENCO_OT_show_task_log(bpy.types.Operator):
    """Fetch the task's log into a Text datablock; with Follow, keep adding new lines while it runs"""
    bl_idname = "flamenco_panel.show_task_log"
    bl_label = "Show Task Log"

    task_id: bpy.props.StringProperty(name="Task ID", description="Empty: the selected task")
    follow: bpy.props.BoolProperty(name="Follow", default=False,
                                   description="Keep fetching new log lines while the task runs")

    def execute(self, context):
        st = state.get(context)
        task_id = self.task_id
        if not task_id and 0 <= st.active_task_index < len(st.tasks):
            task_id = st.tasks[st.active_task_index].id
        if not task_id:
            self.report({'ERROR'}, "No task selected")
            return {'CANCELLED'}
        job = _job_item(st, "")
        job_id, job_name = (job.id, job.name) if job is not None else ("", "")
        follow = self.follow

        def applied(st, data: dict) -> str:
            name = job_name if job_id == data.get("job_id") else ""
            text = logview.text_for(name, data.get("task_name", ""), data["task_id"])
            logview.write(text, data.get("text", ""), append=False)
            logview.show(text, bpy.context)
            following = follow and data.get("task_status") in logview.ACTIVE_TASK_STATUSES
            if following:
                logview.start_following(data["task_id"], text.name, data.get("offset", 0))
            return (f"Log of task \"{data.get('task_name', '')}\" in Text \"{text.name}\""
                    + (" (following)" if following else ""))

        args = {"task_id": task_id, "follow": follow, "offset": 0, "max_bytes": logview._max_chars()}
        return run(self, "task_log", args, applied)


class FLAMENCO_OT_remove_logs(bpy.types.Operator):
    """Delete the Text datablocks holding Flamenco task logs (they are otherwise saved in the .blend)"""
    bl_idname = "flamenco_panel.remove_logs"
    bl_label = "Remove Flamenco Logs"

    def execute(self, context):
        doomed = [t for t in bpy.data.texts if logview.TASK_KEY in t]
        for text in doomed:
            logview.stop_following(text[logview.TASK_KEY])
            bpy.data.texts.remove(text)
        self.report({'INFO'}, f"Removed {len(doomed)} log text(s)")
        return {'FINISHED'}


class FLAMENCO_OT_open_web_ui(bpy.types.Operator):
    """Open the Manager's web interface (at the job, when given or selected)"""
    bl_idname = "flamenco_panel.open_web_ui"
    bl_label = "Open in Web UI"

    job_id: bpy.props.StringProperty()

    def execute(self, context):
        prefs = preferences.get()
        url = prefs.manager_url.rstrip("/") if prefs else ""
        if not url:
            self.report({'ERROR'}, "No Manager URL set")
            return {'CANCELLED'}
        job = _job_item(state.get(context), self.job_id)
        webbrowser.open(f"{url}/app/jobs/{quote(job.id, safe='')}" if job is not None else url)
        return {'FINISHED'}


class FLAMENCO_OT_set_job_priority(bpy.types.Operator):
    """Change the priority of a job (higher runs first)"""
    bl_idname = "flamenco_panel.set_job_priority"
    bl_label = "Set Job Priority"

    job_id: bpy.props.StringProperty(name="Job ID", description="Empty: the selected job")
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)

    def invoke(self, context, event):
        item = _job_item(state.get(context), self.job_id)
        if item is not None:
            self.priority = item.priority
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        st = state.get(context)
        prefs = preferences.get()
        item = _job_item(st, self.job_id)
        if item is None and not self.job_id:
            self.report({'ERROR'}, "No job selected")
            return {'CANCELLED'}
        if item is not None and not item.is_mine and not (prefs and prefs.allow_others):
            return _report_error(self, errors.ActionNotAllowed(f"Job \"{item.name}\" is not yours"))

        def applied(st, data: dict) -> str:
            for job in st.jobs:
                if job.id == data["job_id"]:
                    job.priority = data["priority"]
            return f"Priority set to {data['priority']}"

        return run(self, "job_priority", {"job_id": item.id if item else self.job_id, "priority": self.priority,
                                          "user_name": prefs.user_name if prefs else "",
                                          "allow_others": bool(prefs and prefs.allow_others)}, applied)


class FLAMENCO_OT_open_output_folder(bpy.types.Operator):
    """Open the folder the selected job renders into (the Manager's variables expanded for this computer)"""
    bl_idname = "flamenco_panel.open_output_folder"
    bl_label = "Open Output Folder"

    @classmethod
    def poll(cls, context):
        return bool(state.output_folder(state.selected_job(state.get(context))))

    def execute(self, context):
        folder = state.output_folder(state.selected_job(state.get(context)))
        if paths.is_unc(folder):   # never touch a network share named by the Manager from the main thread
            self.report({'ERROR'}, f"Open this network folder yourself: {folder}")
            return {'CANCELLED'}
        if not os.path.isdir(folder):
            self.report({'ERROR'}, f"Output folder not reachable from this computer: {folder}")
            return {'CANCELLED'}
        bpy.ops.wm.path_open(filepath=folder)
        return {'FINISHED'}


class FLAMENCO_OT_submit_job(bpy.types.Operator):
    """Submit the current scene to the Flamenco Manager"""
    bl_idname = "flamenco_panel.submit_job"
    bl_label = "Submit to Flamenco"

    job_type: bpy.props.StringProperty(name="Job Type", description="Empty: the type chosen in the panel")
    job_name: bpy.props.StringProperty(name="Job Name", description="Empty: the name in the panel")
    priority: bpy.props.IntProperty(name="Priority", default=-1, min=-1, max=100,
                                    description="-1: the priority in the panel")
    settings: bpy.props.StringProperty(name="Settings", description="JSON object of setting overrides")

    def execute(self, context):
        from . import submit
        return submit.execute(self, context)


CLASSES = (
    FLAMENCO_OT_notify, FLAMENCO_OT_ping, FLAMENCO_OT_refresh, FLAMENCO_OT_cancel_job, FLAMENCO_OT_pause_job,
    FLAMENCO_OT_requeue_job, FLAMENCO_OT_delete_job, FLAMENCO_OT_set_worker_status, FLAMENCO_OT_show_task_log,
    FLAMENCO_OT_remove_logs, FLAMENCO_OT_open_web_ui, FLAMENCO_OT_submit_job, FLAMENCO_OT_load_job_types,
    FLAMENCO_OT_abort_submit, FLAMENCO_OT_toggle_auto, FLAMENCO_OT_check_job, FLAMENCO_OT_set_job_priority,
    FLAMENCO_OT_open_output_folder,
)
