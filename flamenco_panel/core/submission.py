# SPDX-License-Identifier: GPL-3.0-or-later
"""A SubmittedJob built from one snapshot of the scene's facts and evaluated settings.

The Blender side takes the snapshot on the main thread (saved copy of the
file, evaluated settings, metadata); everything here is pure, so what is
packed and what is submitted come from that one snapshot.
"""
from __future__ import annotations

import dataclasses
import socket
from typing import Any, Mapping

from . import jobtypes, paths
from .errors import ConfigurationError
from .models import from_link

METADATA_PREFIX = "flamenco_panel."


@dataclasses.dataclass
class Snapshot:
    """Everything a submission needs from Blender, as plain data (crosses the helper link)."""
    job_name: str
    job_type: str
    type_etag: str
    settings: dict                 # evaluated values, one per setting the type uses
    priority: int
    platform: str
    blendfile: str                 # the saved copy made for the farm
    original_blendfile: str        # the artist's file: never written
    project_root: str
    metadata: dict
    worker_tag: str = ""           # UUID, "" = all workers
    paused: bool = False
    expected_files: list = dataclasses.field(default_factory=list)   # what Blender itself knows it uses

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Snapshot":
        return from_link(cls, data)


def metadata(user_name: str, user_email: str, blendfile: str, blender_version: str,
             extension_version: str, hostname: str | None = None) -> dict[str, str]:
    """Job metadata: all values strings (the Manager refuses anything else with a 400)."""
    data = {
        "user.name": user_name.strip(),
        "user.hostname": hostname if hostname is not None else socket.gethostname(),
        "blendfile": blendfile,
        "blender.version": blender_version,
        METADATA_PREFIX + "version": extension_version,
    }
    if user_email.strip():
        data["user.email"] = user_email.strip()
    return {k: str(v) for k, v in data.items() if str(v)}


def check_submittable(job_name: str, blendfile: str, platform: str, user_name: str) -> None:
    """Problems that stop a submission before anything is saved or sent."""
    if not blendfile:
        raise ConfigurationError("Save the blend file once before submitting: the farm needs a file to render")
    if not job_name.strip():
        raise ConfigurationError("The job needs a name")
    if not user_name.strip():
        raise ConfigurationError("Set your user name in the Flamenco Panel preferences: it marks your jobs")
    try:
        paths.refuse_unc(blendfile, platform, "The blend file")
    except paths.PathRuleError as ex:
        raise ConfigurationError(str(ex)) from None


def final_settings(job_type: jobtypes.JobType, values: Mapping[str, Any]) -> dict:
    """Every setting the type uses, typed (the Manager fills no defaults); required ones checked."""
    missing = jobtypes.missing_required(job_type.settings, values)
    if missing:
        names = ", ".join(missing)
        raise ConfigurationError(f"Required setting{'s' if len(missing) > 1 else ''} empty: {names}")
    try:
        return jobtypes.settings_for_submission(job_type, values)
    except jobtypes.SettingValueError as ex:
        raise ConfigurationError(str(ex)) from None


def submitted_job(snapshot: Snapshot, blendfile_for_job: str, *, shaman_checkout: str = "",
                  can_set_initial_status: bool = True) -> dict:
    """The SubmittedJob body; `blendfile_for_job` is where the farm finds the file (packed, in place, Shaman)."""
    settings = dict(snapshot.settings)
    if "blendfile" in settings:
        settings["blendfile"] = blendfile_for_job
    job: dict[str, Any] = {
        "name": snapshot.job_name,
        "type": snapshot.job_type,
        "priority": int(snapshot.priority),
        "submitter_platform": snapshot.platform,
        "settings": settings,
        "metadata": {str(k): str(v) for k, v in snapshot.metadata.items()},
    }
    if snapshot.type_etag:
        job["type_etag"] = snapshot.type_etag
    if snapshot.worker_tag:
        job["worker_tag"] = snapshot.worker_tag
    if shaman_checkout:
        job["storage"] = {"shaman_checkout_id": shaman_checkout}
    if snapshot.paused:
        if not can_set_initial_status:
            raise ConfigurationError("This Manager cannot submit jobs paused (Flamenco 3.6 or newer can)")
        job["initial_status"] = "paused"
    return job
