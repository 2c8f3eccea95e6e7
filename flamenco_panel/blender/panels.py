# SPDX-License-Identifier: GPL-3.0-or-later
"""The N-panel (3D View sidebar, tab "Flamenco"). draw() only reads state: no I/O, ever."""
from __future__ import annotations

import time

import bpy

from ..core import rules
from . import lists, logview, preferences, preview, settings, state


class _FlamencoPanel:
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Flamenco"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def draw_connection(layout, st, prefs) -> None:
    """Every connection state has its own look."""
    if not bpy.app.online_access:
        box = layout.box()
        box.label(text="Online access is off", icon='UNLINKED')
        box.label(text="Flamenco Panel makes no requests until you allow it:")
        box.label(text="Preferences › System › Allow Online Access")
        return
    if prefs is None or not prefs.manager_url.strip() or st.connection == 'UNCONFIGURED':
        box = layout.box()
        box.label(text="No Manager configured", icon='PREFERENCES')
        box.label(text="Set the Manager URL in the extension's preferences")
        if st.message:
            box.label(text=st.message, icon='ERROR')
        return
    row = layout.row(align=True)
    if st.connection == 'CONNECTED' or (st.connection == 'ERROR' and st.last_refresh):
        title = f"{st.manager_name or 'Manager'} {st.manager_version}".strip()
        row.label(text=title, icon=lists.status_icon(st.farm_status, lists.FARM_ICONS))
        row.label(text=st.farm_status or "")
    elif st.connection == 'CONNECTING':
        row.label(text="Connecting…", icon='TIME')
    else:
        row.label(text=prefs.manager_url, icon='LINKED')
    row.operator("flamenco_panel.refresh", text="", icon='FILE_REFRESH')
    if st.connection == 'ERROR':
        box = layout.box()
        box.label(text=st.message or "The Manager could not be reached", icon='ERROR')
        if st.last_refresh:
            box.label(text=f"Showing data from {_age(time.time() - st.last_refresh)} (stale)", icon='TIME')
    elif st.last_refresh:
        layout.label(text=f"Updated {_age(time.time() - st.last_refresh)}", icon='TIME')
    if st.notice:
        layout.label(text=st.notice, icon='INFO')


class FLAMENCO_PT_main(_FlamencoPanel, bpy.types.Panel):
    bl_label = "Flamenco"

    def draw(self, context):
        st = state.get(context)
        if st is None:
            return
        draw_connection(self.layout, st, preferences.get())


def _job_actions(layout, st, job, prefs) -> None:
    can_manage = job.is_mine or bool(prefs and prefs.allow_others)
    row = layout.row(align=True)
    for action, operator, icon in (("cancel", "flamenco_panel.cancel_job", 'CANCEL'),
                                   ("pause", "flamenco_panel.pause_job", 'PAUSE'),
                                   ("requeue", "flamenco_panel.requeue_job", 'FILE_REFRESH'),
                                   ("delete", "flamenco_panel.delete_job", 'TRASH')):
        if can_manage and rules.job_action_allowed(action, job.status, st.can_pause):
            row.operator(operator, text=rules.JOB_ACTIONS[action].label, icon=icon).job_id = job.id
    if can_manage:
        row.operator("flamenco_panel.set_job_priority", text="", icon='SORT_DESC').job_id = job.id
    row.operator("flamenco_panel.open_web_ui", text="", icon='URL').job_id = job.id


class FLAMENCO_PT_jobs(_FlamencoPanel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "FLAMENCO_PT_main"

    @classmethod
    def poll(cls, context):
        st = state.get(context)
        return st is not None and bpy.app.online_access and st.last_refresh > 0

    def draw(self, context):
        layout = self.layout
        st = state.get(context)
        prefs = preferences.get()
        layout.prop(st, "show_all_jobs")
        if not st.jobs:
            layout.label(text="No jobs on this farm yet", icon='INFO')
            return
        layout.template_list("FLAMENCO_UL_jobs", "", st, "jobs", st, "active_job_index", rows=4)
        job = state.selected_job(st)
        if job is None:
            return
        col = layout.column(align=True)
        col.label(text=f"{job.type} · {job.status} · priority {job.priority}")
        col.label(text=f"By {job.user_name or 'unknown'}, created {job.created[:19].replace('T', ' ')}")
        if job.activity:
            col.label(text=job.activity)
        folder = state.output_folder(job)
        if folder:
            row = col.row(align=True)
            row.label(text=folder, icon='FILE_FOLDER')
            row.operator("flamenco_panel.open_output_folder", text="", icon='FILEBROWSER')
        _job_actions(layout, st, job, prefs)
        icon = preview.icon_for(job.id)
        if icon:
            layout.template_icon(icon_value=icon, scale=6.0)
        if st.tasks_job_id == job.id and st.tasks:
            layout.template_list("FLAMENCO_UL_tasks", "", st, "tasks", st, "active_task_index", rows=3)
            row = layout.row(align=True)
            row.operator("flamenco_panel.show_task_log", icon='TEXT')
            row.operator("flamenco_panel.show_task_log", text="Follow", icon='PLAY').follow = True
        if logview.following:
            layout.label(text=f"Following {len(logview.following)} task log(s)", icon='TEXT')
        layout.operator("flamenco_panel.remove_logs", icon='TRASH')


class FLAMENCO_PT_workers(_FlamencoPanel, bpy.types.Panel):
    bl_label = "Workers"
    bl_parent_id = "FLAMENCO_PT_main"
    bl_options = {'DEFAULT_CLOSED'}

    @classmethod
    def poll(cls, context):
        st = state.get(context)
        return st is not None and bpy.app.online_access and st.last_refresh > 0

    def draw(self, context):
        layout = self.layout
        st = state.get(context)
        if not st.workers:
            layout.label(text="No workers have connected to this Manager", icon='INFO')
            return
        layout.template_list("FLAMENCO_UL_workers", "", st, "workers", st, "active_worker_index", rows=3)
        if 0 <= st.active_worker_index < len(st.workers):
            worker = st.workers[st.active_worker_index]
            col = layout.column(align=True)
            col.label(text=f"Version {worker.version or '?'} · last seen {worker.last_seen[:19].replace('T', ' ')}")
            if worker.tags:
                col.label(text=f"Tags: {worker.tags}", icon='BOOKMARKS')
            row = layout.row(align=True)
            for status, icon in (("awake", 'PLAY'), ("asleep", 'SORTTIME'), ("offline", 'UNLINKED')):
                op = row.operator("flamenco_panel.set_worker_status", text=status.title(), icon=icon)
                op.status = status
                op.worker_id = worker.id


def _draw_setting(layout, context, job_type, setting, holder) -> None:
    from ..core import jobtypes
    name = settings.prop_name(setting.key)
    if not hasattr(holder, name) or not jobtypes.shown_in_submission(setting):
        return
    automatic = bool(setting.eval) and not settings.is_manual(context.scene, job_type.name, setting.key)
    row = layout.row(align=True)
    if setting.eval and (automatic or not setting.editable):
        # An automatic value is computed when submitting; show the expression's description instead.
        row.label(text=f"{setting.label or setting.key}: {setting.eval_description or 'automatic'}")
    else:
        sub = row.row(align=True)
        sub.enabled = setting.editable
        sub.prop(holder, name)
    if setting.eval_show_link_button:
        row.operator("flamenco_panel.toggle_auto", text="", icon='LINKED' if automatic else 'UNLINKED').key = \
            setting.key


class FLAMENCO_PT_submit(_FlamencoPanel, bpy.types.Panel):
    bl_label = "Submit"
    bl_parent_id = "FLAMENCO_PT_main"

    @classmethod
    def poll(cls, context):
        return state.get(context) is not None and bpy.app.online_access

    def draw(self, context):
        layout = self.layout
        st = state.get(context)
        props = context.scene.flamenco_panel
        if not bpy.data.filepath:
            layout.label(text="Save the blend file to submit it", icon='INFO')
        if not settings.catalog:
            layout.operator("flamenco_panel.load_job_types", icon='FILE_REFRESH')
            return
        layout.prop(props, "job_name", placeholder=bpy.path.display_name_from_filepath(bpy.data.filepath))
        layout.prop(props, "job_type_enum")
        job_type = settings.current_type(context.scene)
        if props.job_type and job_type is None:
            layout.label(text=f"Job type \"{props.job_type}\" is gone from the Manager", icon='ERROR')
        holder = settings.holder(context.scene)
        if job_type is not None and holder is not None:
            col = layout.column()
            for setting in job_type.settings:
                _draw_setting(col, context, job_type, setting, holder)
        layout.prop(props, "priority")
        layout.prop(props, "worker_tag_enum")
        layout.prop(props, "submit_paused")
        if st.submit_status:
            row = layout.row(align=True)
            row.progress(factor=st.submit_progress, text=st.submit_status.title())
            row.operator("flamenco_panel.abort_submit", text="", icon='CANCEL')
        else:
            row = layout.row(align=True)
            row.operator("flamenco_panel.check_job", icon='CHECKMARK')
            row.operator("flamenco_panel.submit_job", icon='EXPORT')
        if st.last_submitted_id:
            layout.operator("flamenco_panel.open_web_ui", text="Open Submitted Job", icon='URL').job_id = \
                st.last_submitted_id


CLASSES = (FLAMENCO_PT_main, FLAMENCO_PT_submit, FLAMENCO_PT_jobs, FLAMENCO_PT_workers)
