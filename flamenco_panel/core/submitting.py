# SPDX-License-Identifier: GPL-3.0-or-later
"""The submit operation: check, get the file to the farm (in place, BAT pack, or Shaman), submit once.

Runs in the helper process (or directly in background mode). The snapshot
was taken on Blender's main thread; nothing here asks Blender anything.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from typing import Mapping

from . import errors, paths
from .client import ManagerClient
from .submission import Snapshot, submitted_job

def _free_pack_target(location: str, snap: Snapshot, timestamp: datetime.datetime) -> paths.PackTarget:
    """A pack folder nobody uses yet (two submissions of one name in one second get -2, -3, …)."""
    for attempt in range(1, 100):
        name = snap.job_name if attempt == 1 else f"{snap.job_name}-{attempt}"
        target = paths.pack_target(location, name, timestamp, snap.original_blendfile, snap.project_root,
                                   snap.platform)
        if not os.path.exists(target.directory):
            return target
    raise errors.ConfigurationError(f"No free pack folder for \"{snap.job_name}\" in {location}")


def plan_mode(original_blendfile: str, storage_location: str, shaman_enabled: bool, platform: str) -> str:
    """In place when the file already sits in shared storage; else Shaman when enabled; else pack.
    ("none", chosen by the caller, is for job types that render no file.)"""
    if storage_location and paths.is_inside(original_blendfile, storage_location, platform):
        return "in_place"
    return "shaman" if shaman_enabled else "pack"


def _should_abort(progress) -> bool:
    return bool(getattr(progress, "aborted", lambda: False)())


def _check(client: ManagerClient, job: dict) -> None:
    caps = client.capabilities()
    if caps.spec_known and not caps.has("submitJobCheck"):
        return   # before 3.2 there is no check; submit will say what is wrong
    client.check_job(job)


def catalog(client: ManagerClient, args: Mapping, progress) -> dict:
    """What the submit panel needs from the Manager: job types, worker tags, shared storage, variables."""
    platform = str(args.get("platform") or paths.submitter_platform())
    storage = client.shared_storage(platform)
    return {"job_types": client.job_types(), "tags": [dataclasses.asdict(t) for t in client.worker_tags()],
            "shared_storage": dataclasses.asdict(storage),
            "variables": {k: dataclasses.asdict(v) for k, v in client.variables(platform).items()}}


def check(client: ManagerClient, args: Mapping, progress) -> dict:
    """POST /jobs/check of a job as the panel describes it (the Check button)."""
    _check(client, args["job"])
    return {"ok": True}


def submit(client: ManagerClient, args: Mapping, progress) -> dict:
    snap = Snapshot.from_dict(args["snapshot"])
    mode = str(args.get("mode", "pack"))
    caps = client.capabilities()
    storage = client.shared_storage(snap.platform)
    timestamp = datetime.datetime.now()
    relative = paths.relative_blendfile(snap.original_blendfile, snap.project_root, snap.platform)
    target = None
    checkout = ""
    if mode in ("in_place", "none"):
        planned = snap.blendfile
    elif mode == "shaman":
        checkout = f"{paths.job_dir_name(snap.job_name, timestamp)}"
        planned = paths.shaman_blendfile(checkout, relative)
    else:
        if not storage.location:
            raise errors.ConfigurationError("The Manager reports no shared storage for this platform")
        target = _free_pack_target(storage.location, snap, timestamp)
        planned = target.blendfile
    submitted = False
    try:
        job = submitted_job(snap, planned, shaman_checkout=checkout, can_set_initial_status=caps.has_initial_status)
        progress({"phase": "checking"})
        _check(client, job)   # JobTypeStale (412) goes back to Blender, which re-evaluates and tries again once
        stats: dict = {"mode": mode, "files": 0, "bytes": 0, "bytes_uploaded": 0, "missing": []}
        if mode == "pack":
            stats.update(_pack(snap, target, progress))
        elif mode == "shaman":
            result = _shaman(client, snap, checkout, relative, args, progress)
            stats.update(result)
            checkout = result["checkout"]
            job = submitted_job(snap, paths.shaman_blendfile(checkout, relative), shaman_checkout=checkout,
                                can_set_initial_status=caps.has_initial_status)
        if stats["missing"] and not args.get("allow_missing"):
            raise errors.ConfigurationError("Files this scene uses are missing, so the farm cannot render it: "
                                            + ", ".join(stats["missing"][:5])
                                            + (" …" if len(stats["missing"]) > 5 else ""))
        if _should_abort(progress):
            raise errors.Aborted("Submission aborted; nothing was submitted")
        progress({"phase": "submitting"})
        submitted = True   # set before the POST: unless the Manager says no, the farm copy may be in use
        try:
            created = client.submit_job(job)   # exactly once: never retried
        except errors.ManagerHTTPError as ex:
            if 400 <= ex.status < 500:   # refused: no job was made, so its files can go
                submitted = False
            raise
    finally:
        # A temporary copy made for packing always goes; an in-place copy stays only for a submitted job;
        # the artist's own file is never removed.
        is_copy = os.path.normcase(snap.blendfile) != os.path.normcase(snap.original_blendfile)
        if is_copy and (mode != "in_place" or not submitted) and os.path.exists(snap.blendfile):
            os.remove(snap.blendfile)
        if not submitted and target is not None:
            shutil.rmtree(target.directory, ignore_errors=True)   # no half-submitted job leaves files behind
    return {"job": dataclasses.asdict(created), "blendfile": job["settings"].get("blendfile", planned), **stats}


def _pack(snap: Snapshot, target: paths.PackTarget, progress) -> dict:
    from . import packing

    progress({"phase": "packing"})
    result = packing.pack(snap.blendfile, snap.project_root, target.directory, progress,
                          lambda: _should_abort(progress))
    missing = list(result.missing) + packing.cross_check(snap.expected_files, result)
    # The copy was saved under a temporary name next to the artist's file; give it the real name.
    if os.path.normcase(result.output_blendfile) != os.path.normcase(target.blendfile):
        os.makedirs(os.path.dirname(target.blendfile), exist_ok=True)
        shutil.move(result.output_blendfile, target.blendfile)
    return {"files": result.files, "bytes": result.bytes, "missing": sorted(set(missing)),
            "pack_dir": target.directory}


def _shaman(client: ManagerClient, snap: Snapshot, checkout: str, relative: str, args: Mapping, progress) -> dict:
    """Uploads the files BAT finds straight from where they are (only rewritten .blend files are
    staged), so the hash cache hits and an unchanged scene uploads 0 bytes."""
    from . import packing, shaman

    work_dir = os.path.join(str(args["user_dir"]), "staging", paths.job_dir_name(snap.job_name,
                                                                                  datetime.datetime.now()))
    try:
        progress({"phase": "packing"})
        collected = packing.collect(snap.blendfile, snap.project_root, work_dir, progress,
                                    lambda: _should_abort(progress))
        missing = list(collected.missing) + packing.cross_check(snap.expected_files, collected)
        # The copy was saved under a temporary name; in the checkout it takes the artist's file name.
        files = [(src, relative if rel == collected.relative_blendfile else rel) for src, rel in collected.files]
        cache = shaman.HashCache(os.path.join(str(args["user_dir"]), "shaman-hashes.json"))
        progress({"phase": "uploading"})
        uploaded = shaman.upload(client, files, checkout, cache, progress, lambda: _should_abort(progress))
        return {"files": uploaded.files_total, "bytes": collected.bytes, "bytes_uploaded": uploaded.bytes_uploaded,
                "missing": sorted(set(missing)), "checkout": uploaded.checkout_path}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
