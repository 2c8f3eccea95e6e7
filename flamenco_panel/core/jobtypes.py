# SPDX-License-Identifier: GPL-3.0-or-later
"""Job types from the Manager → typed settings, and the rules for showing and sending them.

Parsing is tolerant: job types are written by studios in JavaScript, so any
field may be missing or of the wrong type. A bad setting or job type is
dropped, never a crash. The Blender layer turns `blender_property_kind()`
into bpy properties; the CLI uses `coerce_value()`; submission uses
`settings_for_submission()`.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Mapping

# AvailableJobSettingType. Kept open: an unknown type is treated as a string.
STRING, INT32, FLOAT, BOOL = "string", "int32", "float", "bool"
KNOWN_VISIBILITY = ("visible", "submission", "web", "hidden")
SHOWN_IN_SUBMISSION = ("visible", "submission")

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# propargs the bpy property of each type accepts; anything else would be a TypeError there.
_PROPARG_KEYS = {
    INT32: ("min", "max", "soft_min", "soft_max", "step"),
    FLOAT: ("min", "max", "soft_min", "soft_max", "step", "precision"),
}
_BLENDER_SUBTYPES = {
    "file_path": "FILE_PATH",
    "dir_path": "DIR_PATH",
    "file_name": "FILE_NAME",
    # A directory + "/######"; Blender has no such subtype.
    "hashed_file_path": "FILE_PATH",
}
_TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f"})


class SettingValueError(ValueError):
    """A value that does not fit its setting; the message names the setting for the user."""


class JobTypeError(ValueError):
    """A job-type payload without the minimum needed to use it (a name)."""


@dataclasses.dataclass(frozen=True)
class JobSetting:
    """One AvailableJobSetting, cleaned: every field has the right Python type."""

    key: str
    type: str
    subtype: str = ""
    choices: tuple[str, ...] = ()
    propargs: Mapping[str, int | float] = dataclasses.field(default_factory=dict)
    description: str = ""
    label: str = ""
    default: Any = None
    """Already coerced to `type`; None when absent or unusable."""
    eval: str = ""
    eval_show_link_button: bool = False
    eval_description: str = ""
    visible: str = "visible"
    required: bool = False
    editable: bool = True


@dataclasses.dataclass(frozen=True)
class JobType:
    name: str
    label: str
    description: str = ""
    etag: str = ""
    settings: tuple[JobSetting, ...] = ()


@dataclasses.dataclass(frozen=True)
class PropertyKind:
    """What bpy property a setting becomes; the Blender layer maps this 1:1."""

    kind: str
    """"STRING", "INT", "FLOAT", "BOOL" or "ENUM"."""
    subtype: str = ""
    """For STRING: "FILE_PATH", "DIR_PATH", "FILE_NAME" or "" (plain text)."""
    items: tuple[str, ...] = ()
    """For ENUM: the choices, in the Manager's order."""
    propargs: Mapping[str, int | float] = dataclasses.field(default_factory=dict)
    read_only: bool = False


# ---------------------------------------------------------------- parsing


def label_from_key(key: str) -> str:
    """`render_output_root` → `Render Output Root`, as the official add-on does for labels."""
    words = [word for word in re.split(r"[\s_\-]+", key) if word]
    return " ".join(word[:1].upper() + word[1:] for word in words) or key


def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _bool(value: object, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _finite_number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        if not math.isfinite(value):  # also catches ints too large for a float
            return None
    except OverflowError:
        return None
    return value


def _parse_propargs(raw: object, setting_type: str) -> dict[str, int | float]:
    """Keep only numeric min/max/soft_min/soft_max/step/precision that the property type accepts."""
    if not isinstance(raw, Mapping):
        return {}
    result: dict[str, int | float] = {}
    for key in _PROPARG_KEYS.get(setting_type, ()):
        number = _finite_number(raw.get(key))
        if number is None:
            continue
        integral = setting_type == INT32 or key == "precision"
        if integral:
            if number != int(number):
                continue
            number = int(number)
            if not INT32_MIN <= number <= INT32_MAX:
                continue
        else:
            number = float(number)
        result[key] = number
    for low, high in (("min", "max"), ("soft_min", "soft_max")):
        if low in result and high in result and result[low] > result[high]:
            del result[low], result[high]
    if result.get("precision", 0) < 0:
        del result["precision"]
    return result


def _parse_choices(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    seen: dict[str, None] = {}
    for choice in raw:
        if isinstance(choice, str) and choice not in seen:
            seen[choice] = None
    return tuple(seen)


def parse_job_setting(raw: object) -> JobSetting | None:
    """One setting from the Manager's JSON, or None when it has no usable key or type."""
    if not isinstance(raw, Mapping):
        return None
    key, setting_type = raw.get("key"), raw.get("type")
    if not isinstance(key, str) or not key or not isinstance(setting_type, str) or not setting_type:
        return None
    eval_info = raw.get("evalInfo")
    if not isinstance(eval_info, Mapping):
        eval_info = {}
    visible = raw.get("visible")
    setting = JobSetting(
        key=key,
        type=setting_type,
        subtype=_str(raw.get("subtype")),
        choices=_parse_choices(raw.get("choices")) if setting_type == STRING else (),
        propargs=_parse_propargs(raw.get("propargs"), setting_type),
        description=_str(raw.get("description")),
        label=_str(raw.get("label")) or label_from_key(key),
        eval=_str(raw.get("eval")),
        eval_show_link_button=_bool(eval_info.get("showLinkButton"), False),
        eval_description=_str(eval_info.get("description")),
        visible=visible if isinstance(visible, str) and visible else "visible",
        required=_bool(raw.get("required"), False),
        editable=_bool(raw.get("editable"), True),
    )
    raw_default = raw.get("default")
    if raw_default is None:
        return setting
    try:
        default = coerce_value(setting, raw_default)
    except SettingValueError:
        return setting
    return dataclasses.replace(setting, default=default)


def _parse_settings(raw: object) -> tuple[JobSetting, ...]:
    if not isinstance(raw, list):
        return ()
    settings: dict[str, JobSetting] = {}
    for item in raw:
        setting = parse_job_setting(item)
        if setting is not None and setting.key not in settings:
            settings[setting.key] = setting
    return tuple(settings.values())


def _job_type_or_none(raw: object) -> JobType | None:
    if not isinstance(raw, Mapping):
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        return None
    return JobType(
        name=name,
        label=_str(raw.get("label")) or label_from_key(name),
        description=_str(raw.get("description")),
        etag=_str(raw.get("etag")),
        settings=_parse_settings(raw.get("settings")),
    )


def parse_job_type(payload: object) -> JobType:
    """`GET /api/v3/jobs/type/{name}` → JobType; JobTypeError when it has no name."""
    job_type = _job_type_or_none(payload)
    if job_type is None:
        raise JobTypeError("The Manager sent a job type without a name; it cannot be used.")
    return job_type


def parse_job_types(payload: object) -> list[JobType]:
    """`GET /api/v3/jobs/types` (`{job_types: [...]}`) → job types; unusable entries dropped."""
    raw = payload.get("job_types") if isinstance(payload, Mapping) else payload
    if not isinstance(raw, list):
        return []
    job_types: dict[str, JobType] = {}
    for item in raw:
        job_type = _job_type_or_none(item)
        if job_type is not None and job_type.name not in job_types:
            job_types[job_type.name] = job_type
    return list(job_types.values())


def find_setting(job_type: JobType, key: str) -> JobSetting | None:
    return next((s for s in job_type.settings if s.key == key), None)


# ---------------------------------------------------------------- UI rules


def shown_in_submission(setting: JobSetting) -> bool:
    """Whether the submit panel shows it. Unshown settings are still sent.

    An unknown (newer) visibility is not shown: a hidden setting still works
    from its default/eval, while showing an internal one invites wrong edits.
    """
    return setting.visible in SHOWN_IN_SUBMISSION


def is_enum(setting: JobSetting) -> bool:
    return setting.type == STRING and bool(setting.choices)


def blender_property_kind(setting: JobSetting) -> PropertyKind:
    """Which bpy property to build. Unknown types become plain text: still editable and sent."""
    read_only = not setting.editable
    if is_enum(setting):
        return PropertyKind("ENUM", items=setting.choices, read_only=read_only)
    if setting.type == INT32:
        return PropertyKind("INT", propargs=dict(setting.propargs), read_only=read_only)
    if setting.type == FLOAT:
        return PropertyKind("FLOAT", propargs=dict(setting.propargs), read_only=read_only)
    if setting.type == BOOL:
        return PropertyKind("BOOL", read_only=read_only)
    subtype = _BLENDER_SUBTYPES.get(setting.subtype.lower(), "")
    return PropertyKind("STRING", subtype=subtype, read_only=read_only)


# ---------------------------------------------------------------- values


def _fail(setting: JobSetting, expected: str, value: object) -> SettingValueError:
    return SettingValueError(f"Setting '{setting.label}' ({setting.key}) {expected}, got {value!r}.")


def _check_range(setting: JobSetting, number: int | float, value: object) -> None:
    low, high = setting.propargs.get("min"), setting.propargs.get("max")
    if low is not None and number < low:
        raise _fail(setting, f"must be at least {low}", value)
    if high is not None and number > high:
        raise _fail(setting, f"must be at most {high}", value)


def _to_int(setting: JobSetting, value: object) -> int:
    number: object = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise _fail(setting, "expects a whole number", value) from None
    number = _finite_number(number)
    if number is None or number != int(number):
        raise _fail(setting, "expects a whole number", value)
    result = int(number)
    if not INT32_MIN <= result <= INT32_MAX:
        raise _fail(setting, "is out of the 32-bit integer range", value)
    _check_range(setting, result, value)
    return result


def _to_float(setting: JobSetting, value: object) -> float:
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(setting, "expects a number", value) from None
    number = _finite_number(number)
    if number is None:
        raise _fail(setting, "expects a finite number", value)
    _check_range(setting, number, value)
    return float(number)


def _to_bool(setting: JobSetting, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _fail(setting, "expects true or false", value)


def _to_choice(setting: JobSetting, value: str) -> str:
    if value in setting.choices:
        return value
    folded = [choice for choice in setting.choices if choice.casefold() == value.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise _fail(setting, f"must be one of {', '.join(setting.choices)}", value)


def _to_str(setting: JobSetting, value: object) -> str:
    if isinstance(value, str):
        text = value
    elif _finite_number(value) is not None:
        text = str(value)
    else:
        raise _fail(setting, "expects text", value)
    return _to_choice(setting, text) if is_enum(setting) else text


def coerce_value(setting: JobSetting, value: object) -> Any:
    """A user/CLI/JSON value (`"24"`, `24.0`, `"yes"`) as the setting's type.

    Raises SettingValueError naming the setting. Hard min/max from propargs
    are enforced; enum values must be one of the choices (case-insensitive
    when that is unambiguous).
    """
    if setting.type == INT32:
        return _to_int(setting, value)
    if setting.type == FLOAT:
        return _to_float(setting, value)
    if setting.type == BOOL:
        return _to_bool(setting, value)
    if setting.type != STRING:
        # Unknown (newer) type: pass JSON scalars through untouched.
        if isinstance(value, (str, bool)) or _finite_number(value) is not None:
            return value
        raise _fail(setting, "expects a single value", value)
    return _to_str(setting, value)


def empty_value(setting: JobSetting) -> Any:
    """What to send when there is neither a value nor a default (the Manager fills nothing)."""
    if is_enum(setting):
        return setting.choices[0]
    if setting.type in (INT32, FLOAT):
        zero: int | float = 0 if setting.type == INT32 else 0.0
        low, high = setting.propargs.get("min"), setting.propargs.get("max")
        if low is not None and zero < low:
            zero = low
        elif high is not None and zero > high:
            zero = high
        return int(zero) if setting.type == INT32 else float(zero)
    if setting.type == BOOL:
        return False
    return ""


def default_value(setting: JobSetting) -> Any:
    """The Manager's default when it is usable, else `empty_value()`."""
    if setting.default is None:
        return empty_value(setting)
    return setting.default


def is_empty(value: object) -> bool:
    """None or blank text. 0 and False are real values."""
    return value is None or (isinstance(value, str) and not value.strip())


def missing_required(settings: Iterable[JobSetting], values: Mapping[str, Any]) -> list[str]:
    """Keys of required settings whose value is empty, in the job type's order."""
    return [s.key for s in settings if s.required and is_empty(values.get(s.key))]


def settings_for_submission(job_type: JobType, values: Mapping[str, Any]) -> dict[str, Any]:
    """The `settings` object of a SubmittedJob: one typed value for every setting of the type.

    Given value (coerced; SettingValueError if it does not fit), else the
    default, else a type-appropriate empty value. Keys the type does not know
    are dropped.
    """
    result: dict[str, Any] = {}
    for setting in job_type.settings:
        value = values.get(setting.key)
        result[setting.key] = default_value(setting) if value is None else coerce_value(setting, value)
    return result
