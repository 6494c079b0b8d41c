"""The download/upload hierarchy: paths and URLs as stock BOINC computes them."""
from pathlib import Path

import pytest

from boinc_ext.boinc.hierarchy import (BadFileName, check_file_name, hier_path, hier_url, md5_file,
                                 read_md5_info, write_md5_info)


def test_fanout_subdir_matches_stock_example():
    # boinc-server-facts §3.5: fanout 1024 puts input.txt in 347/
    assert hier_path("input.txt", Path("/p/download"), 1024) == Path("/p/download/347/input.txt")
    assert hier_url("input.txt", "http://h/p/download/", 1024) == "http://h/p/download/347/input.txt"


def test_fanout_zero_is_flat():
    assert hier_path("a.txt", Path("/d"), 0) == Path("/d/a.txt")
    assert hier_url("a.txt", "http://h/d", 0) == "http://h/d/a.txt"


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "a..b", "x" * 200, "a b", "a%20"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(BadFileName):
        check_file_name(name)


def test_md5_cache_file_round_trip(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    md5, size = md5_file(path)
    assert (md5, size) == ("b1946ac92492d2347c6235b4d2611184", 6)
    write_md5_info(path, md5, size)
    assert (tmp_path / "f.md5").read_text() == f"{md5} 6\n"
    assert read_md5_info(path) == (md5, 6)


def test_stale_md5_cache_is_ignored(tmp_path):
    import os
    path = tmp_path / "f"
    path.write_bytes(b"x")
    write_md5_info(path, "0" * 32, 1)
    os.utime(tmp_path / "f.md5", (1, 1))
    assert read_md5_info(path) is None
