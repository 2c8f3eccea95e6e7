# SPDX-License-Identifier: GPL-3.0-or-later
"""Platform-aware path rules for submitting to the farm from any OS.

Everything here works on pure paths (PurePosixPath for linux/darwin,
PureWindowsPath for windows) and never touches the disk, except through an
`exists` function the caller passes in. That way every OS shape is testable on
Linux. `platform` is always one of "linux", "windows", "darwin": the OS whose
rules apply (normally the submitting OS, see `submitter_platform()`).
"""
from __future__ import annotations

import dataclasses
import datetime
import ntpath
import os
import posixpath
import re
import sys
import unicodedata
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Callable

PLATFORMS = ("linux", "windows", "darwin")

# Nearest marker of a higher tier wins over any marker of a lower tier: a
# `.blender_project` declares the project on purpose, a `.git` may just be a
# library checked out inside it.
PROJECT_MARKER_TIERS: tuple[tuple[str, ...], ...] = ((".blender_project",), (".git", ".svn"))

# Room for `<job storage>\<timestamp>-<name>\<project layout>` under Windows'
# 260-character MAX_PATH; counted in UTF-8 bytes (ext4/APFS limits are in bytes).
MAX_JOB_NAME_BYTES = 80

# Forbidden on Windows file systems, plus `{}` (the Manager expands `{variables}`
# in every string setting) and `#` (Blender's frame-number placeholder).
_FORBIDDEN_CHARS = frozenset('<>:"/\\|?*{}#')
# Bidirectional overrides can make a name display as something it is not.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_TIMESTAMP_FORMAT = "%Y-%m-%d-%H%M%S"


class PathRuleError(ValueError):
    """A path the farm cannot use. The message is written for the user."""


@dataclasses.dataclass(frozen=True)
class PackTarget:
    """Where a job's packed files go in job storage (native paths of the submitter)."""

    directory: str
    """The job's own folder: `<job storage>/<YYYY-mm-dd-HHMMSS>-<safe job name>`."""
    blendfile: str
    """The packed blend file inside `directory`, keeping the project layout."""
    relative_blendfile: str
    """`blendfile` relative to `directory`, always with forward slashes."""


def submitter_platform(sys_platform: str = sys.platform) -> str:
    """The submitting OS as Flamenco names it; the Manager uses it to map two-way variables."""
    if sys_platform.startswith("win"):
        return "windows"
    if sys_platform == "darwin":
        return "darwin"
    return "linux"


def _check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}, expected one of {', '.join(PLATFORMS)}")


def pure(path: str | os.PathLike[str], platform: str) -> PurePath:
    """The path as a pure path following `platform`'s rules (no normalisation of `..`)."""
    _check_platform(platform)
    if platform == "windows":
        return PureWindowsPath(os.fspath(path))
    return PurePosixPath(os.fspath(path))


def native(path: str | os.PathLike[str], platform: str) -> str:
    """Format a path the way `platform` writes it (windows: backslashes)."""
    return str(pure(path, platform))


def normalise(path: str | os.PathLike[str], platform: str) -> PurePath:
    """Collapse `.`, `..` and doubled separators lexically (never asks the disk).

    Lexical on purpose: the path may not exist on this machine at all.
    """
    _check_platform(platform)
    text = os.fspath(path)
    if platform == "windows":
        return PureWindowsPath(ntpath.normpath(text))
    normed = posixpath.normpath(text)
    if normed.startswith("//"):
        # POSIX keeps a leading `//`, but Linux and macOS treat it as `/`.
        normed = "/" + normed.lstrip("/")
    return PurePosixPath(normed)


def is_unc(path: str | os.PathLike[str], platform: str = "windows") -> bool:
    """True for Windows network paths: `\\\\server\\share\\...`, `//server/share`, `\\\\?\\UNC\\...`.

    UNC is a Windows notion; on linux/darwin `//x` is just `/x`, so always False there.
    """
    if platform != "windows":
        return False
    text = os.fspath(path).replace("/", "\\")
    if text.startswith(("\\\\?\\", "\\\\.\\")):
        # Long-path / device prefix: only `\\?\UNC\server\share` is a network path.
        return text[4:].upper().startswith("UNC\\")
    return text.startswith("\\\\")


def refuse_unc(path: str | os.PathLike[str], platform: str, what: str = "Path") -> None:
    """Raise PathRuleError for a UNC path, early, with the fix the user needs."""
    if is_unc(path, platform):
        raise PathRuleError(
            f"{what} {os.fspath(path)!r} is a network (UNC) path. Flamenco cannot use "
            "\\\\server\\share paths: map the share to a drive letter (for example S:) "
            "and use that drive letter instead."
        )


def _require_absolute(path: str | os.PathLike[str], platform: str, what: str) -> PurePath:
    refuse_unc(path, platform, what)
    normed = normalise(path, platform)
    if not normed.is_absolute():
        example = "S:\\flamenco" if platform == "windows" else "/srv/flamenco"
        raise PathRuleError(
            f"{what} {os.fspath(path)!r} is not an absolute path; the farm needs a full "
            f"path such as {example!r}."
        )
    return normed


def _fold(part: str, platform: str) -> str:
    """How `platform`'s default file system compares one name."""
    if platform == "darwin":
        # APFS/HFS+ default: case-insensitive and normalisation-insensitive.
        return unicodedata.normalize("NFC", unicodedata.normalize("NFC", part).casefold())
    if platform == "windows":
        return part.casefold()
    return part


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str], platform: str) -> bool:
    """True when `path` is `root` or below it, by `platform`'s file-name rules.

    windows: case-insensitive, drive letters, both slash kinds; darwin:
    case-insensitive (the default file system); linux: case-sensitive.
    `..` is collapsed lexically first, so `/p/a/../../etc` is not inside `/p`.
    """
    p = normalise(path, platform)
    r = normalise(root, platform)
    if _fold(p.anchor, platform) != _fold(r.anchor, platform):
        return False
    p_parts = [_fold(part, platform) for part in p.parts]
    r_parts = [_fold(part, platform) for part in r.parts]
    if len(p_parts) < len(r_parts) or p_parts[: len(r_parts)] != r_parts:
        return False
    # Only a relative path can still hold `..` after normalising: it escapes the root.
    return ".." not in p_parts[len(r_parts):]


def truncate_utf8(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, never splitting a character or a base+combining cluster."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    end = len(encoded[:max_bytes].decode("utf-8", "ignore"))
    # A cut inside base+combining marks drops the whole cluster, not just its accents.
    while end > 0 and unicodedata.combining(text[end]):
        end -= 1
    return text[:end]


def _is_windows_reserved(name: str) -> bool:
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _WINDOWS_RESERVED


def _clean_char(ch: str) -> str:
    if ch in _FORBIDDEN_CHARS:
        return "_"
    if ch in _BIDI_CONTROLS:
        return ""
    category = unicodedata.category(ch)
    if category in ("Zl", "Zp") or ch in "\t\n\r\v\f":
        return " "
    if category in ("Cc", "Cs"):  # control chars; lone surrogates cannot be encoded
        return "_"
    return ch


def safe_job_name(name: object, max_bytes: int = MAX_JOB_NAME_BYTES, fallback: str = "job") -> str:
    """A file-name-safe form of a job name, valid on Windows, macOS and Linux file systems.

    Replaces `<>:"/\\|?*` (and `{}#`, which Flamenco and Blender expand),
    drops control characters, strips leading/trailing dots and spaces, escapes
    Windows device names (CON, NUL, COM1...), bounds the UTF-8 length and is
    never empty.
    """
    if max_bytes < 16:
        raise ValueError("max_bytes must be at least 16")
    text = name if isinstance(name, str) else ""
    text = unicodedata.normalize("NFC", text)
    text = "".join(_clean_char(ch) for ch in text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    text = truncate_utf8(text, max_bytes).strip(" .")
    if _is_windows_reserved(text):
        stem_len = len(text.split(".", 1)[0].rstrip(" "))
        text = truncate_utf8(text[:stem_len] + "_" + text[stem_len:], max_bytes).strip(" .")
    return text or fallback


def job_dir_name(job_name: str, timestamp: datetime.datetime) -> str:
    """`<YYYY-mm-dd-HHMMSS>-<safe job name>`: unique per submission, sorts by time."""
    return f"{timestamp.strftime(_TIMESTAMP_FORMAT)}-{safe_job_name(job_name)}"


def find_project_root(
    blendfile: str | os.PathLike[str],
    exists: Callable[[str], bool] = os.path.exists,
    platform: str | None = None,
) -> str:
    """The folder packing treats as the project: the nearest one holding a project marker.

    Walks up from the blend file's folder looking for `.blender_project`
    (preferred), then `.git` / `.svn`; falls back to the file's own folder.
    `exists` is injectable so tests can use fake trees.
    """
    platform = platform or submitter_platform()
    folder = normalise(blendfile, platform).parent
    candidates = [folder, *folder.parents]
    for markers in PROJECT_MARKER_TIERS:
        for candidate in candidates:
            if any(exists(str(candidate / marker)) for marker in markers):
                return str(candidate)
    return str(folder)


def relative_blendfile(
    blendfile: str | os.PathLike[str], project_root: str | os.PathLike[str], platform: str
) -> str:
    """The blend file's path inside the project root, with forward slashes.

    Keeps the file's own spelling (case) even where the comparison ignores it.
    """
    blend = _require_absolute(blendfile, platform, "Blend file")
    root = _require_absolute(project_root, platform, "Project root")
    if not is_inside(blend, root, platform) or len(blend.parts) <= len(root.parts):
        raise PathRuleError(
            f"The blend file {native(blend, platform)!r} is not inside the project root "
            f"{native(root, platform)!r}; save it inside the project or change the project root."
        )
    return "/".join(blend.parts[len(root.parts):])


def pack_target(
    job_storage: str,
    job_name: str,
    timestamp: datetime.datetime,
    blendfile: str,
    project_root: str,
    platform: str,
) -> PackTarget:
    """Where a job is packed, keeping the blend file's place relative to the project root.

    Project root /p and file /p/scenes/shot.blend → `<dir>/scenes/shot.blend`, so
    relative links to files elsewhere in the project keep working (the official
    add-on flattens it to `<dir>/shot.blend`).
    """
    storage = _require_absolute(job_storage, platform, "Job storage")
    relative = relative_blendfile(blendfile, project_root, platform)
    directory = storage / job_dir_name(job_name, timestamp)
    packed = directory.joinpath(*relative.split("/"))
    return PackTarget(directory=str(directory), blendfile=str(packed), relative_blendfile=relative)


def _relative_parts(path: str, what: str) -> list[str]:
    text = path.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise PathRuleError(f"{what} {path!r} must be relative.")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRuleError(f"{what} {path!r} must not contain '..'.")
    if not parts:
        raise PathRuleError(f"{what} is empty.")
    return parts


def shaman_blendfile(checkout_path: str, relative_blendfile: str) -> str:
    """`{jobs}/<checkout>/<relative blend file>`: the blend file's farm path after a Shaman checkout.

    Always forward slashes: `{jobs}` is expanded per platform by the farm and
    Windows accepts `/`. Either slash kind is read as a separator in the input,
    since the relative path may come from a Windows submitter.
    """
    checkout = _relative_parts(checkout_path, "Shaman checkout path")
    relative = _relative_parts(relative_blendfile, "Blend file path")
    return "/".join(["{jobs}", *checkout, *relative])


_VARIABLE = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")


def expand_variables(text: str, values: dict[str, str]) -> str:
    """`{storage}/renders/x` → this OS's path, using the Manager's variables; unknown `{names}` stay."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def output_folder(render_output_path: str, values: dict[str, str], platform: str) -> str:
    """The folder a job renders into, for this OS: variables expanded, frame pattern dropped."""
    expanded = expand_variables(render_output_path, values)
    if not expanded:
        return ""
    folder = pure(expanded, platform).parent
    return native(folder, platform)
