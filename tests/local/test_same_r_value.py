"""same_r_value compares two .rds files whatever characters their paths hold."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from boinc_ext.local.grid import same_r_value

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript (R) is not installed")


def save_rds(path, value: str) -> None:
    """Saves the R value `value` (R code, no path in it) to `path`."""
    code = f"saveRDS({value}, commandArgs(trailingOnly = TRUE)[1])"
    subprocess.run(["Rscript", "--vanilla", "-e", code, str(path)], check=True, timeout=120)


@pytest.fixture
def awkward_dir(tmp_path):
    directory = tmp_path / "it's a \"dir\" with spaces"
    directory.mkdir()
    return directory


def test_same_value_through_paths_with_quotes_and_spaces(awkward_dir):
    save_rds(awkward_dir / "a'1.rds", "list(x = 1:3, y = 0.5)")
    save_rds(awkward_dir / 'b"2.rds', "list(x = 1:3, y = 0.5 + 1e-12)")
    assert same_r_value(awkward_dir / "a'1.rds", awkward_dir / 'b"2.rds')


def test_different_values_through_paths_with_quotes_and_spaces(awkward_dir):
    save_rds(awkward_dir / "a'1.rds", "list(x = 1:3, y = 0.5)")
    save_rds(awkward_dir / 'b"2.rds', "list(x = 1:3, y = 0.75)")
    assert not same_r_value(awkward_dir / "a'1.rds", awkward_dir / 'b"2.rds')


def test_tolerance_is_used(awkward_dir):
    save_rds(awkward_dir / "a.rds", "1")
    save_rds(awkward_dir / "b.rds", "1.01")
    assert not same_r_value(awkward_dir / "a.rds", awkward_dir / "b.rds")
    assert same_r_value(awkward_dir / "a.rds", awkward_dir / "b.rds", tolerance=0.1)
