"""Building the wrapper zipapp: one deterministic executable, stdlib only, API marker visible."""
from __future__ import annotations

import ast
import io
import stat
import subprocess
import sys
import zipfile

from boinc_ext.project.app_versions import detect_api_version
from wrapper import API_VERSION, WRAPPER_VERSION
from wrapper.build import build_zipapp


def test_build_is_executable_with_shebang_and_api_marker(tmp_path):
    path = build_zipapp(tmp_path)

    assert path.name.startswith(f"r_job_wrapper_{WRAPPER_VERSION}_") and path.suffix == ".pyz"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    data = path.read_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    assert f"API_VERSION_{API_VERSION}".encode() in data
    assert detect_api_version(path) == API_VERSION  # what `project add-version` will read


def test_rebuilding_gives_identical_bytes(tmp_path):
    first = build_zipapp(tmp_path / "a")
    second = build_zipapp(tmp_path / "b")

    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()


def test_archive_holds_driver_and_imports_only_stdlib(tmp_path):
    data = build_zipapp(tmp_path).read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(data[data.index(b"PK"):]))
    names = archive.namelist()
    assert "__main__.py" in names and "wrapper/r_driver.R" in names and "wrapper/main.py" in names
    assert "wrapper/build.py" not in names

    imported = set()
    for name in names:
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(archive.read(name))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"wrapper"}


def test_module_entry_point_prints_the_path(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "wrapper.build", str(tmp_path)],
                               capture_output=True, text=True, check=True)
    path = tmp_path / completed.stdout.strip().rsplit("/", 1)[1]
    assert completed.stdout.strip() == str(path) and path.is_file()


def test_zipapp_runs_with_an_isolated_interpreter(tmp_path):
    """No site-packages: the archive must carry everything but the standard library."""
    path = build_zipapp(tmp_path / "build")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    completed = subprocess.run([sys.executable, "-I", "-S", str(path), "--seed", "bad"], cwd=run_dir,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert "expected a whole number" in completed.stderr
