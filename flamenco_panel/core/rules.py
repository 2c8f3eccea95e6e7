# SPDX-License-Identifier: GPL-3.0-or-later
"""Which action is allowed from which status, and whose job is whose.

The Manager validates none of these transitions, so this one table (copied
from the rules of Flamenco's own web UI) is the only guard; the panel and the
CLI both use it.
"""
from __future__ import annotations

import dataclasses

from .errors import ActionNotAllowed
from .models import Job


@dataclasses.dataclass(frozen=True)
class Action:
    name: str
    label: str
    target_status: str      # "" for delete (a DELETE request, not a status change)
    from_statuses: frozenset
    needs_pause: bool = False  # only on Managers that know `pause-requested` (3.6+)


JOB_ACTIONS = {a.name: a for a in (
    Action("cancel", "Cancel", "cancel-requested",
           frozenset({"active", "failed", "paused", "pause-requested", "queued"})),
    Action("pause", "Pause", "pause-requested", frozenset({"active", "canceled", "queued"}), needs_pause=True),
    Action("requeue", "Requeue", "requeueing", frozenset({"canceled", "completed", "failed", "paused"})),
    Action("delete", "Delete", "", frozenset({"canceled", "completed", "failed", "paused", "queued"})),
)}

TASK_ACTIONS = {a.name: a for a in (
    Action("cancel", "Cancel", "canceled", frozenset({"active", "queued", "soft-failed"})),
    Action("requeue", "Requeue", "queued", frozenset({"canceled", "completed", "failed"})),
)}

WORKER_STATUSES = ("awake", "asleep", "offline", "restart")

FINISHED_JOB_STATUSES = frozenset({"completed", "failed", "canceled"})


def is_mine(job: Job, user_name: str) -> bool:
    """A job is mine when its metadata `user.name` equals the configured user name."""
    user_name = user_name.strip()
    return bool(user_name) and job.metadata.get("user.name", "").strip() == user_name


def job_action_allowed(action: str, status: str, can_pause: bool = True) -> bool:
    rule = JOB_ACTIONS.get(action)
    if rule is None or (rule.needs_pause and not can_pause):
        return False
    return status in rule.from_statuses


def check_job_action(action: str, job: Job, user_name: str, *, allow_others: bool = False,
                     can_pause: bool = True) -> Action:
    """The Action to perform, or ActionNotAllowed with a message saying why (nothing is sent)."""
    rule = JOB_ACTIONS.get(action)
    if rule is None:
        raise ActionNotAllowed(f"Unknown job action {action!r}")
    if not allow_others and not is_mine(job, user_name):
        owner = job.metadata.get("user.name") or "nobody"
        raise ActionNotAllowed(
            f"Job \"{job.name}\" belongs to {owner}, not {user_name or '(no user name set)'}; "
            "turn on \"Allow managing other users' jobs\" in the preferences to manage it")
    if rule.needs_pause and not can_pause:
        raise ActionNotAllowed("This Manager cannot pause jobs (Flamenco 3.6 or newer can)")
    if job.status not in rule.from_statuses:
        raise ActionNotAllowed(f"Cannot {rule.label.lower()} job \"{job.name}\": it is {job.status or 'in an unknown state'}")
    return rule


def check_task_action(action: str, status: str) -> Action:
    rule = TASK_ACTIONS.get(action)
    if rule is None:
        raise ActionNotAllowed(f"Unknown task action {action!r}")
    if status not in rule.from_statuses:
        raise ActionNotAllowed(f"Cannot {rule.label.lower()} a task that is {status or 'in an unknown state'}")
    return rule


def check_worker_status(status: str, can_restart: bool = True) -> str:
    if status not in WORKER_STATUSES:
        raise ActionNotAllowed(f"Unknown worker status {status!r}; use one of {', '.join(WORKER_STATUSES)}")
    if status == "restart" and not can_restart:
        raise ActionNotAllowed("This worker cannot restart itself")
    return status
