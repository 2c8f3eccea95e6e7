# SPDX-License-Identifier: GPL-3.0-or-later
"""build.py: layout of the zip, reproducibility, and Blender's validator really judging it."""
from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build(source: pathlib.Path, out: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(source / "build.py"), "--output-dir", str(out)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stderr
    return next(out.glob("flamenco_panel-*.zip")), result


def test_zip_layout(built):
    path, result = built
    assert "validated with" in result.stderr
    names = zipfile.ZipFile(path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "core/client.py" in names and "blender/operators.py" in names and "link/helper.py" in names
    assert "wheels/blender_asset_tracer-1.23-py3-none-any.whl" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]


def test_same_inputs_same_bytes(built, tmp_path):
    path, _ = built
    again = build(ROOT, tmp_path)
    assert again.returncode == 0
    assert hashlib.sha256(path.read_bytes()).digest() == \
        hashlib.sha256(next(tmp_path.glob("*.zip")).read_bytes()).digest()


def test_validator_rejects_a_bad_manifest(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "build.py", source)
    shutil.copytree(ROOT / "flamenco_panel", source / "flamenco_panel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    manifest = (ROOT / "blender_manifest.toml").read_text()
    (source / "blender_manifest.toml").write_text(manifest.replace('tagline = "', 'tagline = "Ends with a dot.').replace(
        'jobs"\n', 'jobs."\n', 1))
    result = build(source, tmp_path / "out")
    assert result.returncode == 1 and "validator rejected" in result.stderr and "Traceback" not in result.stderr


def test_missing_manifest_is_a_clear_error(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "build.py", source)
    result = build(source, tmp_path / "out")
    assert result.returncode == 1 and "manifest not found" in result.stderr and "Traceback" not in result.stderr
