# SPDX-License-Identifier: GPL-3.0-or-later
"""UILists for jobs, tasks and workers; filtering happens in filter_items (no data copies)."""
from __future__ import annotations

import bpy

from . import state

JOB_ICONS = {
    "active": 'PLAY', "queued": 'SORTTIME', "completed": 'CHECKMARK', "failed": 'ERROR', "canceled": 'CANCEL',
    "cancel-requested": 'CANCEL', "paused": 'PAUSE', "pause-requested": 'PAUSE', "requeueing": 'FILE_REFRESH',
    "under-construction": 'MODIFIER', "soft-failed": 'ERROR',
}
WORKER_ICONS = {"awake": 'PLAY', "asleep": 'SORTTIME', "offline": 'UNLINKED', "error": 'ERROR',
                "starting": 'TIME', "testing": 'EXPERIMENTAL', "restart": 'FILE_REFRESH'}
FARM_ICONS = {"active": 'PLAY', "idle": 'CHECKMARK', "waiting": 'SORTTIME', "asleep": 'SORTTIME',
              "inoperative": 'ERROR', "starting": 'TIME', "unknown": 'QUESTION'}


def status_icon(status: str, table: dict = JOB_ICONS) -> str:
    return table.get(status, 'QUESTION')   # statuses are an open enum


class FLAMENCO_UL_jobs(bpy.types.UIList):
    status_filter: bpy.props.StringProperty(name="Status", description="Show only jobs with this status")

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon=status_icon(item.status))
        if item.has_progress:
            row.progress(factor=item.progress, text=f"{item.progress:.0%}")
        else:
            row.label(text=item.status)
        row.label(text=str(item.priority))

    def draw_filter(self, context, layout):
        row = layout.row()
        row.prop(self, "filter_name", text="")
        row.prop(self, "status_filter", text="", icon='FILTER')

    def filter_items(self, context, data, propname):
        jobs = getattr(data, propname)
        st = state.get(context)
        show_all = bool(st and st.show_all_jobs)
        name = self.filter_name.lower()
        wanted = self.status_filter.strip().lower()
        count = len(jobs)
        if not name and not wanted:   # the common case, fast on big farms: one bulk read
            mine = [False] * count
            jobs.foreach_get("is_mine", mine)
            flags = [self.bitflag_filter_item if (show_all or m) else 0 for m in mine]
        else:
            flags = [self.bitflag_filter_item if ((show_all or job.is_mine) and (not name or name in job.name.lower())
                                                  and (not wanted or job.status == wanted)) else 0
                     for job in jobs]
        return flags, [count - 1 - i for i in range(count)]   # stored oldest first, shown newest first


class FLAMENCO_UL_tasks(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon=status_icon(item.status))
        row.label(text=item.worker or "-")
        row.label(text=f"{item.progress:.0%}")


class FLAMENCO_UL_workers(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon=status_icon(item.status, WORKER_ICONS))
        row.label(text=item.status + (f" → {item.status_change}" if item.status_change else ""))
        row.label(text=item.task or "-")


CLASSES = (FLAMENCO_UL_jobs, FLAMENCO_UL_tasks, FLAMENCO_UL_workers)
