# SPDX-License-Identifier: GPL-3.0-or-later
"""Path rules for every submitting OS, tested on pure paths (runs on any OS)."""
import datetime
import sys

import pytest

from flamenco_panel.core import paths
from flamenco_panel.core.paths import PathRuleError

TS = datetime.datetime(2024, 3, 5, 7, 8, 9)


# ---------------------------------------------------------------- platform


@pytest.mark.parametrize(
    "sys_platform, expected",
    [
        ("linux", "linux"),
        ("win32", "windows"),
        ("darwin", "darwin"),
        ("freebsd14", "linux"),
        ("cygwin", "linux"),
    ],
)
def test_submitter_platform(sys_platform, expected):
    assert paths.submitter_platform(sys_platform) == expected


def test_submitter_platform_defaults_to_this_machine():
    assert paths.submitter_platform() == paths.submitter_platform(sys.platform)
    assert paths.submitter_platform() in paths.PLATFORMS


def test_unknown_platform_is_a_programming_error():
    with pytest.raises(ValueError):
        paths.native("/a", "amiga")


@pytest.mark.parametrize(
    "path, platform, expected",
    [
        ("C:/jobs/a", "windows", "C:\\jobs\\a"),
        ("C:\\jobs/mixed\\slashes", "windows", "C:\\jobs\\mixed\\slashes"),
        ("/srv/jobs/a", "linux", "/srv/jobs/a"),
        ("/Volumes/Render/jobs", "darwin", "/Volumes/Render/jobs"),
        ("/srv/odd\\name", "linux", "/srv/odd\\name"),  # a backslash is a name character on POSIX
    ],
)
def test_native(path, platform, expected):
    assert paths.native(path, platform) == expected


@pytest.mark.parametrize(
    "path, platform, expected",
    [
        ("/p/a/../b/./c", "linux", "/p/b/c"),
        ("//p//a", "linux", "/p/a"),
        ("/../a", "darwin", "/a"),
        ("C:/p/a/..\\b", "windows", "C:\\p\\b"),
        ("C:\\..\\a", "windows", "C:\\a"),
    ],
)
def test_normalise(path, platform, expected):
    assert str(paths.normalise(path, platform)) == expected


# ---------------------------------------------------------------- UNC


@pytest.mark.parametrize(
    "path, expected",
    [
        ("\\\\server\\share\\jobs", True),
        ("//server/share", True),
        ("\\\\server/share/mixed", True),
        ("\\\\?\\UNC\\server\\share\\x", True),
        ("\\\\?\\C:\\long\\path", False),
        ("\\\\.\\C:\\device", False),
        ("C:\\jobs", False),
        ("S:/jobs", False),
        ("\\jobs", False),
        ("relative\\path", False),
    ],
)
def test_is_unc_windows(path, expected):
    assert paths.is_unc(path) is expected
    assert paths.is_unc(path, "windows") is expected


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_is_unc_is_windows_only(platform):
    assert not paths.is_unc("//server/share", platform)
    assert not paths.is_unc("\\\\server\\share", platform)


def test_refuse_unc_advises_a_drive_letter():
    with pytest.raises(PathRuleError, match="drive letter") as info:
        paths.refuse_unc("\\\\nas\\render", "windows", what="Job storage")
    assert "Job storage" in str(info.value)
    assert isinstance(info.value, ValueError)
    paths.refuse_unc("S:\\render", "windows")
    paths.refuse_unc("//nas/render", "linux")


# ---------------------------------------------------------------- is_inside


@pytest.mark.parametrize(
    "path, root, expected",
    [
        ("/p/scenes/shot.blend", "/p", True),
        ("/p", "/p", True),
        ("/p/", "/p", True),
        ("/P/scenes/shot.blend", "/p", False),  # case-sensitive
        ("/pp/shot.blend", "/p", False),  # prefix of a name is not a parent
        ("/p/a/../../etc/passwd", "/p", False),
        ("/p/a/../b.blend", "/p", True),
        ("/p/./a", "/p/.", True),
        ("/other", "/p", False),
        ("relative/file", "/p", False),
        ("/p/file", "relative", False),
        ("a/b", "a", True),
        ("../a/b", ".", False),
        ("//p/a", "/p", True),
    ],
)
def test_is_inside_linux(path, root, expected):
    assert paths.is_inside(path, root, "linux") is expected


@pytest.mark.parametrize(
    "path, root, expected",
    [
        ("C:\\p\\scenes\\shot.blend", "C:\\p", True),
        ("c:/P/Scenes/shot.blend", "C:\\p", True),  # drive and name case, slash kind
        ("C:\\p\\..\\q\\x.blend", "C:\\p", False),
        ("D:\\p\\x.blend", "C:\\p", False),
        ("C:\\pp\\x.blend", "C:\\p", False),
        ("C:\\p", "c:/p/", True),
        ("\\p\\x.blend", "C:\\p", False),  # rooted without a drive
        ("C:\\ÄRGER\\x.blend", "c:\\ärger", True),
        ("//server/share/p/x", "\\\\SERVER\\share\\p", True),
    ],
)
def test_is_inside_windows(path, root, expected):
    assert paths.is_inside(path, root, "windows") is expected


@pytest.mark.parametrize(
    "path, root, expected",
    [
        ("/Users/Ana/Project/shot.blend", "/users/ana/project", True),  # default APFS: case-insensitive
        ("/Users/Ana/Cafe\u0301/shot.blend", "/Users/Ana/Caf\u00e9", True),  # NFD vs NFC
        ("/Users/Ana/../Bob/shot.blend", "/Users/Ana", False),
        ("/Users/Anab/shot.blend", "/Users/Ana", False),
    ],
)
def test_is_inside_darwin(path, root, expected):
    assert paths.is_inside(path, root, "darwin") is expected


def test_is_inside_accepts_pure_paths():
    assert paths.is_inside(paths.pure("C:/p/x", "windows"), "C:/p", "windows")


# ---------------------------------------------------------------- safe_job_name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Shot 010", "Shot 010"),
        ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
        ("render {jobs} #01", "render _jobs_ _01"),
        ("tab\there\nnewline", "tab here newline"),
        ("bell\x07\x7fdel", "bell__del"),
        ("trailing dots...", "trailing dots"),
        ("  spaces around  ", "spaces around"),
        ("...hidden", "hidden"),
        ("many    spaces", "many spaces"),
        ("CON", "CON_"),
        ("con", "con_"),
        ("nul.txt", "nul_.txt"),
        ("Com1", "Com1_"),
        ("LPT9.blend", "LPT9_.blend"),
        ("COM\u00b9", "COM\u00b9_"),
        ("CONIN$", "CONIN$_"),
        ("CONSOLE", "CONSOLE"),
        ("con.", "con_"),
        ("3Д рендеринг", "3Д рендеринг"),
        ("日本語のショット", "日本語のショット"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFC
        ("evil\u202eexe.blend", "evilexe.blend"),  # bidi override removed
        ("bad\udcffsurrogate", "bad_surrogate"),
        ("emoji 🎬", "emoji 🎬"),
    ],
)
def test_safe_job_name(name, expected):
    assert paths.safe_job_name(name) == expected


@pytest.mark.parametrize("name", ["", "   ", "...", " . . ", None, 42, "\u202e"])
def test_safe_job_name_never_empty(name):
    assert paths.safe_job_name(name) == "job"
    assert paths.safe_job_name(name, fallback="untitled") == "untitled"


@pytest.mark.parametrize(
    "name",
    ["x" * 1000, "ж" * 500, "日" * 300, "🎬" * 100, "a" * 79 + "é" * 10, "e\u0301" * 200, "a " * 300],
)
def test_safe_job_name_is_bounded(name):
    safe = paths.safe_job_name(name)
    assert 0 < len(safe.encode("utf-8")) <= paths.MAX_JOB_NAME_BYTES
    assert not safe.endswith((" ", "."))
    safe.encode("utf-8")  # never half a character


def test_safe_job_name_cut_drops_a_split_cluster():
    # Decomposed text that stays decomposed under NFC: 'x' + combining low line.
    name = "a" * 79 + "x\u0332"
    assert paths.safe_job_name(name) == "a" * 79


def test_safe_job_name_custom_bound_and_reserved_after_cut():
    assert paths.safe_job_name("CON" + "x" * 100, max_bytes=16) == "CON" + "x" * 13
    assert paths.safe_job_name("CON. and more", max_bytes=16) == "CON_. and more"
    with pytest.raises(ValueError):
        paths.safe_job_name("x", max_bytes=3)


@pytest.mark.parametrize("name", ["CON", "a/b", "x" * 500, "tr. ", "日本"])
def test_safe_job_name_is_stable(name):
    once = paths.safe_job_name(name)
    assert paths.safe_job_name(once) == once


def test_job_dir_name():
    assert paths.job_dir_name("Shot: 010?", TS) == "2024-03-05-070809-Shot_ 010_"


# ---------------------------------------------------------------- find_project_root


def fake_tree(*existing):
    present = set(existing)
    asked = []

    def exists(path):
        asked.append(path)
        return path in present

    exists.asked = asked
    return exists


def test_find_project_root_git_linux():
    exists = fake_tree("/home/ana/proj/.git")
    root = paths.find_project_root("/home/ana/proj/scenes/sq01/shot.blend", exists, "linux")
    assert root == "/home/ana/proj"


def test_find_project_root_svn_and_nearest_wins():
    exists = fake_tree("/p/.svn", "/p/sub/.git")
    assert paths.find_project_root("/p/sub/x/shot.blend", exists, "linux") == "/p/sub"


def test_find_project_root_prefers_blender_project_over_nearer_git():
    exists = fake_tree("/p/.blender_project", "/p/libs/chars/.git")
    assert paths.find_project_root("/p/libs/chars/hero.blend", exists, "linux") == "/p"


def test_find_project_root_falls_back_to_file_folder():
    exists = fake_tree()
    assert paths.find_project_root("/tmp/a/b/shot.blend", exists, "linux") == "/tmp/a/b"
    # It looked all the way up, including the file system root.
    assert "/.git" in exists.asked


def test_find_project_root_windows():
    exists = fake_tree("D:\\Projects\\Film\\.git")
    root = paths.find_project_root("D:/Projects/Film/scenes\\shot.blend", exists, "windows")
    assert root == "D:\\Projects\\Film"


def test_find_project_root_darwin_unicode():
    exists = fake_tree("/Users/ana/Películas/.blender_project")
    root = paths.find_project_root("/Users/ana/Películas/escenas/toma.blend", exists, "darwin")
    assert root == "/Users/ana/Películas"


def test_find_project_root_normalises_dotdot():
    exists = fake_tree("/p/.git")
    assert paths.find_project_root("/p/scenes/../other/shot.blend", exists, "linux") == "/p"


def test_find_project_root_real_disk(tmp_path):
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / "scenes").mkdir()
    blend = tmp_path / "proj" / "scenes" / "shot.blend"
    assert paths.find_project_root(str(blend)) == str(tmp_path / "proj")


# ---------------------------------------------------------------- pack_target


def test_pack_target_keeps_layout_linux():
    target = paths.pack_target(
        "/render/jobs", "Shot 010", TS, "/p/scenes/shot.blend", "/p", "linux"
    )
    assert target.directory == "/render/jobs/2024-03-05-070809-Shot 010"
    assert target.blendfile == "/render/jobs/2024-03-05-070809-Shot 010/scenes/shot.blend"
    assert target.relative_blendfile == "scenes/shot.blend"


def test_pack_target_file_in_root():
    target = paths.pack_target("/render/jobs", "j", TS, "/p/shot.blend", "/p", "linux")
    assert target.blendfile == "/render/jobs/2024-03-05-070809-j/shot.blend"


def test_pack_target_windows_mixed_slashes_and_case():
    target = paths.pack_target(
        "S:/flamenco/jobs\\", "Shot/010", TS, "c:\\Proj\\Scenes/Shot.blend", "C:/proj", "windows"
    )
    assert target.directory == "S:\\flamenco\\jobs\\2024-03-05-070809-Shot_010"
    assert target.blendfile == "S:\\flamenco\\jobs\\2024-03-05-070809-Shot_010\\Scenes\\Shot.blend"
    assert target.relative_blendfile == "Scenes/Shot.blend"


def test_pack_target_darwin_case_insensitive_root():
    target = paths.pack_target(
        "/Volumes/Farm/jobs", "Toma", TS, "/Users/Ana/Proj/Escenas/toma.blend", "/users/ana/proj", "darwin"
    )
    assert target.blendfile == "/Volumes/Farm/jobs/2024-03-05-070809-Toma/Escenas/toma.blend"


def test_pack_target_normalises_dotdot():
    target = paths.pack_target(
        "/render/jobs/../jobs", "j", TS, "/p/a/../scenes/shot.blend", "/p/", "linux"
    )
    assert target.blendfile == "/render/jobs/2024-03-05-070809-j/scenes/shot.blend"


def test_pack_target_unsafe_and_long_names():
    target = paths.pack_target("/jobs", "CON" + "?" * 200, TS, "/p/x.blend", "/p", "linux")
    name = target.directory.rsplit("/", 1)[1]
    assert name.startswith("2024-03-05-070809-CON")
    assert "?" not in name
    assert len(name.encode()) <= 18 + paths.MAX_JOB_NAME_BYTES


@pytest.mark.parametrize(
    "storage, blendfile, root, platform, match",
    [
        ("\\\\nas\\jobs", "C:\\p\\x.blend", "C:\\p", "windows", "drive letter"),
        ("S:\\jobs", "\\\\nas\\p\\x.blend", "\\\\nas\\p", "windows", "drive letter"),
        ("S:\\jobs", "C:\\p\\x.blend", "//nas/p", "windows", "drive letter"),
        ("jobs", "/p/x.blend", "/p", "linux", "absolute"),
        ("S:jobs", "C:\\p\\x.blend", "C:\\p", "windows", "absolute"),
        ("\\jobs", "C:\\p\\x.blend", "C:\\p", "windows", "absolute"),
        ("/jobs", "x.blend", "/p", "linux", "absolute"),
        ("/jobs", "/q/x.blend", "/p", "linux", "not inside"),
        ("/jobs", "/P/x.blend", "/p", "linux", "not inside"),
        ("/jobs", "/p/../q/x.blend", "/p", "linux", "not inside"),
        ("/jobs", "/p", "/p", "linux", "not inside"),
        ("S:\\jobs", "D:\\p\\x.blend", "C:\\p", "windows", "not inside"),
    ],
)
def test_pack_target_refusals(storage, blendfile, root, platform, match):
    with pytest.raises(PathRuleError, match=match):
        paths.pack_target(storage, "j", TS, blendfile, root, platform)


def test_relative_blendfile_keeps_own_spelling():
    assert paths.relative_blendfile("C:\\PROJ\\A\\b.blend", "c:\\proj", "windows") == "A/b.blend"


# ---------------------------------------------------------------- Shaman


@pytest.mark.parametrize(
    "checkout, relative, expected",
    [
        ("2024-03-05-070809-j", "scenes/shot.blend", "{jobs}/2024-03-05-070809-j/scenes/shot.blend"),
        ("j-1", "scenes\\shot.blend", "{jobs}/j-1/scenes/shot.blend"),
        ("a/b/", "./x.blend", "{jobs}/a/b/x.blend"),
        ("Ж", "日本/ショット.blend", "{jobs}/Ж/日本/ショット.blend"),
    ],
)
def test_shaman_blendfile(checkout, relative, expected):
    assert paths.shaman_blendfile(checkout, relative) == expected


@pytest.mark.parametrize(
    "checkout, relative",
    [
        ("/abs", "x.blend"),
        ("c", "/etc/x.blend"),
        ("c", "C:\\x.blend"),
        ("c", "../x.blend"),
        ("..", "x.blend"),
        ("", "x.blend"),
        ("c", ""),
    ],
)
def test_shaman_blendfile_refusals(checkout, relative):
    with pytest.raises(PathRuleError):
        paths.shaman_blendfile(checkout, relative)
