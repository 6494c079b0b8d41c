"""Stager places input files without ever replacing one another process staged."""
import errno
import os

import pytest

from boinc_ext.boinc.hierarchy import hier_path, md5_file
from boinc_ext.boinc.work import Stager, WorkError

REAL_LINK = os.link


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "input.csv"
    path.write_text("ours\n")
    return path


def _staged_path(project, name="input.csv"):
    return hier_path(name, project.download_dir, project.uldl_dir_fanout)


def _another_process_stages_first(monkeypatch, target, content: str):
    """os.link as it behaves when another process staged `target` just before our link."""
    def link(src, dst):
        if str(dst) == str(target) and not os.path.exists(target):
            target.write_text(content)
        return REAL_LINK(src, dst)
    monkeypatch.setattr(os, "link", link)


def _part_files(project):
    return [p.name for p in project.download_dir.rglob("*.part")]


@pytest.mark.parametrize("link", [False, True])
def test_a_different_file_staged_meanwhile_is_not_overwritten(project, source, monkeypatch, link):
    target = _staged_path(project)
    _another_process_stages_first(monkeypatch, target, "theirs\n")
    stager = Stager(project, link=link)
    with pytest.raises(WorkError, match="a different file of that name is already staged"):
        stager.stage(source)
    assert target.read_text() == "theirs\n"
    assert _part_files(project) == []


@pytest.mark.parametrize("link", [False, True])
def test_an_identical_file_staged_meanwhile_is_accepted_and_kept_on_rollback(project, source, monkeypatch, link):
    target = _staged_path(project)
    _another_process_stages_first(monkeypatch, target, "ours\n")
    stager = Stager(project, link=link)
    staged = stager.stage(source)
    assert (staged.md5, staged.nbytes) == md5_file(source)
    assert target.stat().st_ino != source.stat().st_ino  # theirs, not a link to ours
    stager.rollback()
    assert target.read_text() == "ours\n"
    assert _part_files(project) == []


def test_another_filesystem_copies_instead_of_linking(project, source, monkeypatch):
    def link(src, dst):
        if str(src) == str(source):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return REAL_LINK(src, dst)
    monkeypatch.setattr(os, "link", link)
    staged = Stager(project, link=True).stage(source)
    target = _staged_path(project)
    assert target.read_text() == "ours\n"
    assert target.stat().st_ino != source.stat().st_ino
    assert (staged.md5, staged.nbytes) == md5_file(source)
    assert _part_files(project) == []


def test_other_link_errors_propagate(project, source, monkeypatch):
    def link(src, dst):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    monkeypatch.setattr(os, "link", link)
    with pytest.raises(PermissionError):
        Stager(project, link=True).stage(source)
    assert not _staged_path(project).exists()


def test_link_stages_the_same_inode(project, source):
    Stager(project, link=True).stage(source)
    assert _staged_path(project).stat().st_ino == source.stat().st_ino
