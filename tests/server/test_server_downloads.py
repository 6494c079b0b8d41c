"""Downloads from download_dir: hierarchy paths, ranges for resuming, and nothing outside."""
from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
from flask import Flask

from boinc_ext.boinc.hierarchy import hier_path, hier_url
from boinc_ext.server.downloads import create_blueprint

from wsgi_server import serving

CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def app(project):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(project))
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def staged(project):
    """An input file in its fan-out directory, as create_work stages it; returns its URL path."""
    path = hier_path("input_1.dat", project.download_dir, project.uldl_dir_fanout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CONTENT)
    url = hier_url("input_1.dat", project.download_url, project.uldl_dir_fanout)
    return url[len("http://127.0.0.1:8999"):]


def test_hierarchy_file_is_served_whole(client, staged):
    response = client.get(staged, headers={"Accept-Encoding": "deflate, gzip, br, zstd"})
    assert response.status_code == 200
    assert response.get_data() == CONTENT
    assert response.headers["Content-Length"] == str(len(CONTENT))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.mimetype == "application/octet-stream"
    assert "Content-Encoding" not in response.headers


def test_flat_app_file_is_served(project, client):
    (project.download_dir / "r_job_1.00_x86_64-pc-linux-gnu.sh").write_text("#!/bin/sh\n")
    response = client.get("/test/download/r_job_1.00_x86_64-pc-linux-gnu.sh")
    assert response.status_code == 200 and response.get_data() == b"#!/bin/sh\n"


def test_gzip_named_file_is_sent_as_raw_bytes(project, client):
    """A guessed Content-Encoding: gzip would make libcurl unpack it and fail the md5."""
    (project.download_dir / "data.csv.gz").write_bytes(b"\x1f\x8b\x08\x00packed")
    response = client.get("/test/download/data.csv.gz")
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.get_data() == b"\x1f\x8b\x08\x00packed"


@pytest.mark.parametrize("range_header, start, end", [
    ("bytes=4000-", 4000, 10239),
    ("bytes=0-", 0, 10239),
    ("bytes=10-19", 10, 19),
    ("bytes=10000-20000", 10000, 10239),
    ("bytes=-100", 10140, 10239),
])
def test_ranges_resume(client, staged, range_header, start, end):
    response = client.get(staged, headers={"Range": range_header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(CONTENT)}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.get_data() == CONTENT[start:end + 1]


@pytest.mark.parametrize("range_header", ["bytes=10240-", "bytes=20000-30000", "bytes=5-2"])
def test_unsatisfiable_ranges_are_416(client, staged, range_header):
    response = client.get(staged, headers={"Range": range_header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(CONTENT)}"


def test_head_gives_the_length_without_the_body(client, staged):
    response = client.head(staged)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(CONTENT)) and response.get_data() == b""


def test_missing_files_and_directories_are_404(project, client, staged):
    subdir = staged.rsplit("/", 1)[0]
    for path in ("/test/download/nothing_here", subdir, subdir + "/", "/test/download/",
                 "/test/download"):
        assert client.get(path).status_code == 404, path


@pytest.mark.parametrize("path", [
    "/test/download/../config.xml",
    "/test/download/%2e%2e/config.xml",
    "/test/download/..%2fconfig.xml",
    "/test/download//etc/passwd",
    "/test/download/%2fetc%2fpasswd",
    "/test/download/a/../../config.xml",
    "/test/download/..\\config.xml",
])
def test_traversal_is_404(project, client, path):
    assert (project.project_dir / "config.xml").exists()
    response = client.get(path)
    assert response.status_code == 404
    assert b"db_passwd" not in response.get_data()


def test_symlink_leading_outside_is_404(project, client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    os.symlink(secret, project.download_dir / "link.txt")
    os.symlink(tmp_path, project.download_dir / "outside")
    assert client.get("/test/download/link.txt").status_code == 404
    assert client.get("/test/download/outside/secret.txt").status_code == 404


def test_ranges_through_waitress(app, staged):
    """The same over a real socket, where waitress's file wrapper carries the body."""
    with serving(app) as base:
        request = urllib.request.Request(base + staged, headers={"Range": "bytes=5000-"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 5000-10239/{len(CONTENT)}"
            assert response.read() == CONTENT[5000:]
        with urllib.request.urlopen(base + staged, timeout=10) as response:
            assert response.read() == CONTENT
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base + "/test/download/../config.xml", timeout=10)
        assert error.value.code == 404
