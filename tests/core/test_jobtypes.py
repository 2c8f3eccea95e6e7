# SPDX-License-Identifier: GPL-3.0-or-later
"""Job-type parsing and the rules for showing, coercing and sending settings."""
import copy
import json
import math

import pytest

from flamenco_panel.core import jobtypes
from flamenco_panel.core.jobtypes import JobSetting, SettingValueError

# Shaped like `GET /api/v3/jobs/types` from a 3.5 Manager: settings carry no `label`.
PAYLOAD_3_5 = {
    "job_types": [
        {
            "name": "simple-blender-render",
            "label": "Simple Blender Render",
            "etag": "8a3e1ad2b1c1f0c4e7a0b7c2d4b5e6f7a8b9c0d1",
            "settings": [
                {
                    "key": "frames",
                    "type": "string",
                    "required": True,
                    "eval": "f'{C.scene.frame_start}-{C.scene.frame_end}'",
                    "evalInfo": {"showLinkButton": True, "description": "Scene frame range"},
                    "description": "Frame range to render. Examples: '47', '1-30', '3, 5-10, 47-327'",
                },
                {
                    "key": "chunk_size",
                    "type": "int32",
                    "default": 1,
                    "description": "Number of frames to render in one Blender render task",
                    "visible": "submission",
                },
                {
                    "key": "render_output_root",
                    "type": "string",
                    "subtype": "dir_path",
                    "required": True,
                    "visible": "submission",
                    "description": "Base directory of where render output is stored.",
                },
                {
                    "key": "add_path_components",
                    "type": "int32",
                    "required": True,
                    "default": 0,
                    "propargs": {"min": 0, "max": 32},
                    "visible": "submission",
                },
                {
                    "key": "render_output_path",
                    "type": "string",
                    "subtype": "file_path",
                    "editable": False,
                    "eval": "str(Path(abspath(settings.render_output_root), "
                    "last_n_dir_parts(settings.add_path_components), jobname, '{timestamp}', '######'))",
                    "description": "Final file path of where render output will be saved",
                },
                {"key": "blendfile", "type": "string", "required": True, "visible": "web"},
                {"key": "fps", "type": "float", "visible": "hidden",
                 "eval": "C.scene.render.fps / C.scene.render.fps_base"},
                {"key": "format", "type": "string", "required": True, "visible": "web",
                 "eval": "C.scene.render.image_settings.file_format"},
                {"key": "image_file_extension", "type": "string", "required": True, "visible": "hidden",
                 "eval": "C.scene.render.file_extension"},
                {"key": "has_previews", "type": "bool", "required": False, "visible": "hidden",
                 "eval": "C.scene.render.image_settings.use_preview"},
            ],
        },
        {
            "name": "echo-sleep-test",
            "label": "Echo Sleep Test",
            "etag": "0123abcd",
            "settings": [
                {"key": "message", "type": "string", "required": True},
                {"key": "sleep_duration_seconds", "type": "int32", "default": 1},
                {"key": "sleep_repeats", "type": "int32", "default": 1},
            ],
        },
    ]
}

# Shaped like 3.9-beta1: labels, a job-type description, the `scene` setting.
PAYLOAD_3_9 = copy.deepcopy(PAYLOAD_3_5)
_sbr = PAYLOAD_3_9["job_types"][0]
_sbr["description"] = "Render a sequence of frames, and create a preview video file"
_sbr["settings"][0]["label"] = "Frame Range"
_sbr["settings"][5]["label"] = "Blend File"
_sbr["settings"].append(
    {"key": "scene", "type": "string", "required": True, "eval": "C.scene.name", "visible": "web",
     "description": "Name of the scene to render.", "label": "Scene"}
)


def setting(**raw) -> JobSetting:
    raw.setdefault("key", "k")
    raw.setdefault("type", "string")
    parsed = jobtypes.parse_job_setting(raw)
    assert parsed is not None
    return parsed


# ---------------------------------------------------------------- parsing real shapes


@pytest.mark.parametrize("payload", [PAYLOAD_3_5, PAYLOAD_3_9], ids=["3.5", "3.9"])
def test_parse_real_payloads(payload):
    types = jobtypes.parse_job_types(json.loads(json.dumps(payload)))
    assert [t.name for t in types] == ["simple-blender-render", "echo-sleep-test"]
    sbr = types[0]
    assert sbr.label == "Simple Blender Render"
    assert sbr.etag == payload["job_types"][0]["etag"]
    keys = [s.key for s in sbr.settings]
    assert keys[:5] == [
        "frames", "chunk_size", "render_output_root", "add_path_components", "render_output_path"
    ]

    frames = jobtypes.find_setting(sbr, "frames")
    assert frames.required and frames.eval.startswith("f'")
    assert frames.eval_show_link_button is True
    assert frames.eval_description == "Scene frame range"
    assert frames.visible == "visible"
    assert frames.editable is True

    chunk = jobtypes.find_setting(sbr, "chunk_size")
    assert chunk.default == 1 and isinstance(chunk.default, int)
    assert chunk.visible == "submission"

    apc = jobtypes.find_setting(sbr, "add_path_components")
    assert apc.propargs == {"min": 0, "max": 32}

    rop = jobtypes.find_setting(sbr, "render_output_path")
    assert rop.editable is False and rop.subtype == "file_path"


def test_labels_3_5_derived_from_key():
    sbr = jobtypes.parse_job_types(PAYLOAD_3_5)[0]
    labels = {s.key: s.label for s in sbr.settings}
    assert labels["frames"] == "Frames"
    assert labels["render_output_root"] == "Render Output Root"
    assert labels["fps"] == "Fps"


def test_labels_3_9_used_when_given():
    sbr = jobtypes.parse_job_types(PAYLOAD_3_9)[0]
    assert jobtypes.find_setting(sbr, "frames").label == "Frame Range"
    assert jobtypes.find_setting(sbr, "chunk_size").label == "Chunk Size"
    assert sbr.description.startswith("Render a sequence")


def test_parse_single_job_type():
    jt = jobtypes.parse_job_type(PAYLOAD_3_9["job_types"][1])
    assert jt.name == "echo-sleep-test"
    assert [s.key for s in jt.settings] == ["message", "sleep_duration_seconds", "sleep_repeats"]


def test_job_type_label_missing_is_derived():
    jt = jobtypes.parse_job_type({"name": "my-cool_type", "settings": []})
    assert jt.label == "My Cool Type"
    assert jt.etag == "" and jt.description == "" and jt.settings == ()


@pytest.mark.parametrize("payload", [None, {}, {"label": "x"}, {"name": ""}, {"name": 3}, [], "text"])
def test_parse_job_type_without_name_raises_clear_error(payload):
    with pytest.raises(jobtypes.JobTypeError, match="without a name"):
        jobtypes.parse_job_type(payload)


def test_unknown_keys_ignored():
    raw = copy.deepcopy(PAYLOAD_3_9)
    raw["future"] = {"x": 1}
    raw["job_types"][1]["new_field"] = [1, 2]
    raw["job_types"][1]["settings"][0]["shiny"] = True
    types = jobtypes.parse_job_types(raw)
    assert jobtypes.find_setting(types[1], "message").required is True


def test_bare_list_accepted():
    assert [t.name for t in jobtypes.parse_job_types(PAYLOAD_3_5["job_types"])] == [
        "simple-blender-render",
        "echo-sleep-test",
    ]


def test_bad_entries_dropped_not_fatal():
    payload = {
        "job_types": [
            None,
            "echo",
            {"label": "no name"},
            {"name": "ok", "settings": [
                None, 42, {"type": "string"}, {"key": "", "type": "string"}, {"key": "t"},
                {"key": "n", "type": None}, {"key": ["x"], "type": "string"},
                {"key": "good", "type": "int32"},
                {"key": "good", "type": "string"},  # duplicate key: first wins
            ]},
            {"name": "ok", "settings": []},  # duplicate name: first wins
            {"name": "bad-settings", "settings": {"key": "x"}},
        ]
    }
    types = jobtypes.parse_job_types(payload)
    assert [t.name for t in types] == ["ok", "bad-settings"]
    assert [(s.key, s.type) for s in types[0].settings] == [("good", "int32")]
    assert types[1].settings == ()


@pytest.mark.parametrize("payload", [None, 42, "x", {"job_types": None}, {"job_types": {"a": 1}}, {}])
def test_garbage_payloads_give_empty_list(payload):
    assert jobtypes.parse_job_types(payload) == []


# ---------------------------------------------------------------- field rules


def test_defaults_of_a_minimal_setting():
    s = setting(key="msg")
    assert s == JobSetting(key="msg", type="string", label="Msg")
    assert s.visible == "visible" and s.editable is True and s.required is False
    assert s.default is None and s.choices == () and dict(s.propargs) == {}


def test_type_kept_open():
    s = setting(type="int64", default=5)
    assert s.type == "int64"
    assert s.default == 5


@pytest.mark.parametrize(
    "visible, expected",
    [(None, "visible"), ("", "visible"), (3, "visible"), ("web", "web"), ("hidden", "hidden"),
     ("submission", "submission"), ("advanced", "advanced")],
)
def test_visible_field(visible, expected):
    raw = {} if visible is None else {"visible": visible}
    assert setting(**raw).visible == expected


@pytest.mark.parametrize(
    "value, expected", [(True, True), (False, False), ("false", True), (0, True), (None, True)]
)
def test_editable_defaults_true_and_only_real_bools_count(value, expected):
    assert setting(editable=value).editable is expected


@pytest.mark.parametrize("value, expected", [(True, True), ("yes", False), (1, False), (None, False)])
def test_required_only_real_bools(value, expected):
    assert setting(required=value).required is expected


def test_eval_info_tolerant():
    assert setting(evalInfo="nope").eval_show_link_button is False
    s = setting(eval=42, evalInfo={"showLinkButton": "yes", "description": 5})
    assert s.eval == "" and s.eval_show_link_button is False and s.eval_description == ""


def test_text_fields_wrong_types():
    s = setting(description={"a": 1}, label=["x"], subtype=7)
    assert s.description == "" and s.label == "K" and s.subtype == ""


def test_choices_only_strings_unique_and_only_for_strings():
    s = setting(choices=["PNG", 3, None, "EXR", "PNG", {"x": 1}])
    assert s.choices == ("PNG", "EXR")
    assert setting(type="int32", choices=["1", "2"]).choices == ()
    assert setting(choices="PNG").choices == ()


@pytest.mark.parametrize(
    "setting_type, raw, expected",
    [
        ("int32", {"min": 0, "max": 32}, {"min": 0, "max": 32}),
        ("int32", {"min": 1.0, "max": 2.5}, {"min": 1}),  # non-integral int bound dropped
        ("int32", {"soft_min": 1, "soft_max": 10, "step": 2, "precision": 3},
         {"soft_min": 1, "soft_max": 10, "step": 2}),
        ("float", {"min": 0, "max": 1, "precision": 3, "step": 10},
         {"min": 0.0, "max": 1.0, "precision": 3, "step": 10.0}),
        ("float", {"precision": 2.5}, {}),
        ("float", {"precision": -1}, {}),
        ("float", {"min": 10**400, "max": 1}, {"max": 1.0}),
        ("float", {"min": "0", "max": "10"}, {}),  # strings are not numbers
        ("float", {"min": True, "max": None}, {}),
        ("float", {"min": {"nested": 1}, "max": [1, 2], "soft_max": 5}, {"soft_max": 5.0}),
        ("float", {"min": math.nan, "max": math.inf}, {}),
        ("float", {"min": 10, "max": 1, "soft_min": 0, "soft_max": 2}, {"soft_min": 0.0, "soft_max": 2.0}),
        ("float", {"options": {"HIDDEN"}, "update": "x", "subtype": "PERCENTAGE", "min": 0}, {"min": 0.0}),
        ("int32", {"min": 2**40}, {}),
        ("string", {"min": 1, "maxlen": 3}, {}),
        ("bool", {"min": 0}, {}),
        ("float", "min=0", {}),
        ("float", None, {}),
        ("float", [1, 2], {}),
    ],
)
def test_propargs(setting_type, raw, expected):
    parsed = setting(type=setting_type, propargs=raw).propargs
    assert dict(parsed) == expected
    for key, value in parsed.items():
        assert type(value) is (int if setting_type == "int32" or key == "precision" else float)


@pytest.mark.parametrize(
    "setting_type, default, expected",
    [
        ("int32", 1, 1),
        ("int32", 1.0, 1),
        ("int32", "3", 3),
        ("int32", 1.5, None),
        ("int32", "many", None),
        ("float", 24, 24.0),
        ("float", "x", None),
        ("bool", False, False),
        ("bool", "nah", None),
        ("string", "text", "text"),
        ("string", 5, "5"),
        ("string", {"a": 1}, None),
        ("string", None, None),
    ],
)
def test_default_coerced_or_dropped(setting_type, default, expected):
    s = setting(type=setting_type, default=default)
    assert s.default == expected
    assert type(s.default) is type(expected)


def test_enum_default_must_be_a_choice():
    assert setting(choices=["PNG", "EXR"], default="EXR").default == "EXR"
    assert setting(choices=["PNG", "EXR"], default="TIFF").default is None
    assert setting(choices=["PNG", "EXR"], default="exr").default == "EXR"


def test_int_default_outside_min_max_is_dropped():
    assert setting(type="int32", propargs={"min": 1}, default=0).default is None


# ---------------------------------------------------------------- UI rules


@pytest.mark.parametrize(
    "visible, shown",
    [("visible", True), ("submission", True), ("web", False), ("hidden", False), ("advanced", False)],
)
def test_shown_in_submission(visible, shown):
    assert jobtypes.shown_in_submission(setting(visible=visible)) is shown


def test_shown_in_submission_missing_visible():
    assert jobtypes.shown_in_submission(setting())


def test_unshown_settings_still_sent():
    sbr = jobtypes.parse_job_types(PAYLOAD_3_9)[0]
    sent = jobtypes.settings_for_submission(sbr, {})
    hidden = [s.key for s in sbr.settings if not jobtypes.shown_in_submission(s)]
    assert set(hidden) == {"blendfile", "fps", "format", "image_file_extension", "has_previews", "scene"}
    assert set(hidden) <= set(sent)


@pytest.mark.parametrize(
    "raw, kind, subtype",
    [
        ({"type": "string"}, "STRING", ""),
        ({"type": "string", "subtype": "file_path"}, "STRING", "FILE_PATH"),
        ({"type": "string", "subtype": "dir_path"}, "STRING", "DIR_PATH"),
        ({"type": "string", "subtype": "hashed_file_path"}, "STRING", "FILE_PATH"),
        ({"type": "string", "subtype": "file_name"}, "STRING", "FILE_NAME"),
        ({"type": "string", "subtype": "DIR_PATH"}, "STRING", "DIR_PATH"),
        ({"type": "string", "subtype": "colour"}, "STRING", ""),
        ({"type": "int32"}, "INT", ""),
        ({"type": "float"}, "FLOAT", ""),
        ({"type": "bool"}, "BOOL", ""),
        ({"type": "string", "choices": ["A", "B"]}, "ENUM", ""),
        ({"type": "string", "choices": []}, "STRING", ""),
        ({"type": "int32", "choices": ["1"]}, "INT", ""),
        ({"type": "uuid"}, "STRING", ""),
    ],
)
def test_blender_property_kind(raw, kind, subtype):
    result = jobtypes.blender_property_kind(setting(**raw))
    assert (result.kind, result.subtype) == (kind, subtype)


def test_blender_property_kind_details():
    enum = jobtypes.blender_property_kind(setting(choices=["PNG", "EXR"], editable=False))
    assert enum.items == ("PNG", "EXR") and enum.read_only
    number = jobtypes.blender_property_kind(setting(type="int32", propargs={"min": 0, "max": 32}))
    assert dict(number.propargs) == {"min": 0, "max": 32} and not number.read_only
    assert dict(jobtypes.blender_property_kind(setting(subtype="file_path")).propargs) == {}


# ---------------------------------------------------------------- coerce_value


@pytest.mark.parametrize(
    "raw, value, expected",
    [
        ({"type": "int32"}, "24", 24),
        ({"type": "int32"}, " -3 ", -3),
        ({"type": "int32"}, "4.0", 4),
        ({"type": "int32"}, 7.0, 7),
        ({"type": "int32"}, 7, 7),
        ({"type": "float"}, "2.5", 2.5),
        ({"type": "float"}, 24, 24.0),
        ({"type": "float"}, "1e3", 1000.0),
        ({"type": "bool"}, "yes", True),
        ({"type": "bool"}, "False", False),
        ({"type": "bool"}, " ON ", True),
        ({"type": "bool"}, 0, False),
        ({"type": "bool"}, True, True),
        ({"type": "string"}, "1-10", "1-10"),
        ({"type": "string"}, 10, "10"),
        ({"type": "string"}, "", ""),
        ({"type": "string", "choices": ["PNG", "OPEN_EXR"]}, "OPEN_EXR", "OPEN_EXR"),
        ({"type": "string", "choices": ["PNG", "OPEN_EXR"]}, "png", "PNG"),
        ({"type": "int64"}, "12", "12"),
        ({"type": "int64"}, 12, 12),
        ({"type": "int32", "propargs": {"min": 0, "max": 32}}, "32", 32),
    ],
)
def test_coerce_value(raw, value, expected):
    result = jobtypes.coerce_value(setting(**raw), value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "raw, value, match",
    [
        ({"type": "int32"}, "ten", "whole number"),
        ({"type": "int32"}, "2.5", "whole number"),
        ({"type": "int32"}, 2.5, "whole number"),
        ({"type": "int32"}, True, "whole number"),
        ({"type": "int32"}, None, "whole number"),
        ({"type": "int32"}, [1], "whole number"),
        ({"type": "int32"}, "nan", "whole number"),
        ({"type": "int32"}, 2**31, "32-bit"),
        ({"type": "int32", "propargs": {"min": 0, "max": 32}}, 33, "at most 32"),
        ({"type": "int32", "propargs": {"min": 1}}, "0", "at least 1"),
        ({"type": "float"}, "fast", "number"),
        ({"type": "float"}, "inf", "finite"),
        ({"type": "float"}, 10**400, "finite"),
        ({"type": "int32"}, 10**400, "whole number"),
        ({"type": "float"}, math.nan, "finite"),
        ({"type": "float"}, False, "finite"),
        ({"type": "float", "propargs": {"max": 1}}, 1.5, "at most 1.0"),
        ({"type": "bool"}, "maybe", "true or false"),
        ({"type": "bool"}, 2, "true or false"),
        ({"type": "bool"}, None, "true or false"),
        ({"type": "string"}, None, "text"),
        ({"type": "string"}, True, "text"),
        ({"type": "string"}, {"a": 1}, "text"),
        ({"type": "string", "choices": ["PNG", "EXR"]}, "TIFF", "one of PNG, EXR"),
        ({"type": "string", "choices": ["png", "PNG"]}, "Png", "one of png, PNG"),
        ({"type": "int64"}, {"a": 1}, "single value"),
    ],
)
def test_coerce_value_errors_name_the_setting(raw, value, match):
    s = setting(key="chunk_size", label="Chunk Size", **raw)
    with pytest.raises(SettingValueError, match=match) as info:
        jobtypes.coerce_value(s, value)
    assert "Chunk Size" in str(info.value) and "chunk_size" in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- missing_required


def test_missing_required():
    sbr = jobtypes.parse_job_types(PAYLOAD_3_9)[0]
    values = {"frames": "1-10", "render_output_root": "  ", "add_path_components": 0,
              "format": "PNG", "image_file_extension": ".png", "has_previews": False}
    assert jobtypes.missing_required(sbr.settings, values) == ["render_output_root", "blendfile", "scene"]


def test_missing_required_zero_and_false_are_values():
    settings = [setting(key="a", type="int32", required=True), setting(key="b", type="bool", required=True),
                setting(key="c", required=True), setting(key="d")]
    assert jobtypes.missing_required(settings, {"a": 0, "b": False, "c": None}) == ["c"]
    assert jobtypes.missing_required(settings, {}) == ["a", "b", "c"]


# ---------------------------------------------------------------- settings_for_submission


def test_settings_for_submission_fills_everything():
    sbr = jobtypes.parse_job_types(PAYLOAD_3_9)[0]
    sent = jobtypes.settings_for_submission(
        sbr, {"frames": "1-10", "render_output_root": "/render", "blendfile": "/jobs/x/shot.blend",
              "fps": 24, "format": "PNG", "not_a_setting": "dropped", "scene": "Scene"}
    )
    assert list(sent) == [s.key for s in sbr.settings]
    assert sent["frames"] == "1-10"
    assert sent["chunk_size"] == 1  # default
    assert sent["add_path_components"] == 0  # default
    assert sent["render_output_path"] == ""  # no value, no default
    assert sent["fps"] == 24.0 and isinstance(sent["fps"], float)  # coerced
    assert sent["has_previews"] is False
    assert sent["image_file_extension"] == ""
    assert "not_a_setting" not in sent
    json.dumps(sent)


def test_settings_for_submission_echo_sleep_sends_all_three():
    echo = jobtypes.parse_job_types(PAYLOAD_3_5)[1]
    assert jobtypes.settings_for_submission(echo, {"message": "hi"}) == {
        "message": "hi", "sleep_duration_seconds": 1, "sleep_repeats": 1
    }


def test_settings_for_submission_empty_values_by_type():
    jt = jobtypes.parse_job_type({"name": "t", "settings": [
        {"key": "s", "type": "string"},
        {"key": "i", "type": "int32"},
        {"key": "f", "type": "float"},
        {"key": "b", "type": "bool"},
        {"key": "e", "type": "string", "choices": ["A", "B"]},
        {"key": "e2", "type": "string", "choices": ["A", "B"], "default": "Z"},
        {"key": "imin", "type": "int32", "propargs": {"min": 1}},
        {"key": "fmax", "type": "float", "propargs": {"max": -2}},
        {"key": "u", "type": "uuid"},
    ]})
    sent = jobtypes.settings_for_submission(jt, {})
    assert sent == {
        "s": "", "i": 0, "f": 0.0, "b": False, "e": "A", "e2": "A", "imin": 1, "fmax": -2.0, "u": ""
    }
    assert type(sent["i"]) is int and type(sent["f"]) is float and type(sent["imin"]) is int


def test_settings_for_submission_none_means_not_given():
    echo = jobtypes.parse_job_types(PAYLOAD_3_5)[1]
    assert jobtypes.settings_for_submission(echo, {"message": None, "sleep_repeats": None}) == {
        "message": "", "sleep_duration_seconds": 1, "sleep_repeats": 1
    }


def test_settings_for_submission_bad_value_names_setting():
    echo = jobtypes.parse_job_types(PAYLOAD_3_5)[1]
    with pytest.raises(SettingValueError, match="sleep_repeats"):
        jobtypes.settings_for_submission(echo, {"sleep_repeats": "lots"})


# ---------------------------------------------------------------- hostile input never crashes


HOSTILE_VALUES = [
    None, True, 0, -1, 2**70, 10**400, "1e400", "9" * 5000, 1.5, math.nan, math.inf,
    "", "x", "\udcff", [], [None], {}, {"a": {"b": {"c": []}}}, object(),
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
@pytest.mark.parametrize(
    "field",
    ["key", "type", "subtype", "choices", "propargs", "description", "label", "default", "eval",
     "evalInfo", "visible", "required", "editable"],
)
def test_hostile_setting_fields_never_crash(field, value):
    raw = {"key": "k", "type": "float", "choices": ["a"], field: value}
    parsed = jobtypes.parse_job_setting(raw)
    if parsed is not None:
        jobtypes.blender_property_kind(parsed)
        jobtypes.shown_in_submission(parsed)
        jobtypes.empty_value(parsed)
        jobtypes.missing_required([parsed], {})
        jt = jobtypes.JobType(name="t", label="T", settings=(parsed,))
        jobtypes.settings_for_submission(jt, {})


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
@pytest.mark.parametrize("field", ["name", "label", "description", "etag", "settings"])
def test_hostile_job_type_fields_never_crash(field, value):
    raw = copy.deepcopy(PAYLOAD_3_9["job_types"][0])
    raw[field] = value
    jobtypes.parse_job_types({"job_types": [raw, None, value]})


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
@pytest.mark.parametrize("setting_type", ["string", "int32", "float", "bool", "mystery"])
def test_coerce_hostile_values_only_raise_setting_errors(setting_type, value):
    s = setting(type=setting_type, propargs={"min": 0, "max": 10})
    try:
        jobtypes.coerce_value(s, value)
    except SettingValueError:
        pass


def test_all_none_setting():
    fields = ["key", "type", "subtype", "choices", "propargs", "description", "label", "default",
              "eval", "evalInfo", "visible", "required", "editable"]
    raw = {field: None for field in fields}
    assert jobtypes.parse_job_setting(raw) is None
    raw.update(key="k", type="string")
    assert jobtypes.parse_job_setting(raw) == JobSetting(key="k", type="string", label="K")
