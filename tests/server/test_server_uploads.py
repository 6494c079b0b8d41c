"""The file upload handler, fed the bodies a real 7.20.5 client sent (captures in
shared/reference/client-interop/), re-signed with the test project's upload key."""
from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flask import Flask

from boinc_ext.boinc import crypto
from boinc_ext.boinc.hierarchy import hier_path
from boinc_ext.server import uploads
from boinc_ext.server.uploads import (STATUS_OK, STATUS_PERMANENT, STATUS_TRANSIENT, UploadHandler,
                                      create_blueprint)

from upload_client import parse_reply, size_query, upload_body
from wsgi_server import serving

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "client-interop"   # copied from shared/reference
UPLOAD_PATH = "/test_cgi/file_upload_handler"
_SIGNATURE = re.compile(rb"<xml_signature>.*?</xml_signature>", re.DOTALL)


def captured_body(name: str) -> bytes:
    """The request body of a capture: everything from <data_server_request> on."""
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"capture {path} is not present")
    data = path.read_bytes()
    return data[data.index(b"<data_server_request>"):]


def resign(body: bytes, name: str, max_nbytes: float, key: crypto.PrivateKey) -> bytes:
    signature = crypto.sign_upload_certificate(name, max_nbytes, key).encode()
    return _SIGNATURE.sub(lambda _: b"<xml_signature>\n" + signature.rstrip(b"\n") + b"</xml_signature>",
                          body, count=1)


@pytest.fixture
def upload_key(project) -> crypto.PrivateKey:
    return crypto.read_private_key(project.key_dir / "upload_private")


def make_client(config):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(config))
    return app.test_client()


@pytest.fixture
def client(project):
    return make_client(project)


def post(client, body: bytes, **kwargs) -> tuple[int, str | None, int | None]:
    response = client.post(UPLOAD_PATH, data=body, content_type="application/x-www-form-urlencoded",
                           **kwargs)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse_reply(response.get_data(as_text=True))


def stored(project, name: str) -> Path:
    return hier_path(name, project.upload_dir, project.uldl_dir_fanout)


# --- the captured client requests -------------------------------------------------------


def test_captured_upload_with_certificate_is_stored(project, client, upload_key, caplog):
    body = resign(captured_body("upload_request_1_with_cert.txt"), "spike_14978_wu_2_r0_out", 100000,
                  upload_key)
    caplog.set_level(logging.INFO, logger="boinc_ext.server.uploads")
    response = client.post(UPLOAD_PATH, data=body, content_type="application/x-www-form-urlencoded")
    assert response.get_data() == (CAPTURES / "upload_reply_1.xml").read_bytes()
    path = stored(project, "spike_14978_wu_2_r0_out")
    assert path.read_bytes() == b"HELLO FROM JOB 2 AT 1795315050.3450723\n"
    assert path.parent.parent == project.upload_dir  # in its fan-out directory
    assert any(uploads.EVENT_UPLOADED in r.getMessage() and "spike_14978_wu_2_r0_out" in r.getMessage()
               and "39 bytes" in r.getMessage() for r in caplog.records)


def test_captured_upload_without_certificate_is_refused_when_certificates_are_required(project, client):
    status, message, _ = post(client, captured_body("upload_request_2_no_cert.txt"))
    assert status == STATUS_PERMANENT
    assert "certificate" in message
    assert not stored(project, "min_15354_1_out").exists()


def test_captured_upload_without_certificate_is_stored_when_certificates_are_ignored(project):
    client = make_client(dataclasses.replace(project, ignore_upload_certificates=True))
    assert post(client, captured_body("upload_request_2_no_cert.txt")) == (STATUS_OK, None, None)
    assert stored(project, "min_15354_1_out").read_bytes() == b"MINIMAL INPUT\n"


def test_the_original_signature_from_another_key_is_refused(project, client):
    status, message, _ = post(client, captured_body("upload_request_1_with_cert.txt"))
    assert (status, message) == (STATUS_PERMANENT, "spike_14978_wu_2_r0_out: invalid upload certificate")
    assert not stored(project, "spike_14978_wu_2_r0_out").exists()


# --- certificates -----------------------------------------------------------------------


def test_certificate_for_another_name_or_limit_or_key_is_refused(project, client, upload_key):
    code_sign_key = crypto.read_private_key(project.key_dir / "code_sign_private")
    other_name = upload_body("out_a", b"x", None).replace(
        b"<xml_signature>\n", b"<xml_signature>\n" + crypto.sign_upload_certificate(
            "out_b", 100000, upload_key).rstrip("\n").encode(), 1)
    raised_limit = upload_body("out_a", b"x", upload_key, max_nbytes=10**9, signed_max=100000)
    wrong_key = upload_body("out_a", b"x", code_sign_key)
    garbage = upload_body("out_a", b"x", None).replace(b"<xml_signature>\n", b"<xml_signature>\nzz\n.", 1)
    for body in (other_name, raised_limit, wrong_key, garbage):
        status, message, _ = post(client, body)
        assert (status, message) == (STATUS_PERMANENT, "out_a: invalid upload certificate")
    assert not stored(project, "out_a").exists()


def test_certificate_needs_max_nbytes(project, client, upload_key):
    body = upload_body("out_a", b"x", upload_key).replace(b"<max_nbytes>100000</max_nbytes>\n", b"")
    status, message, _ = post(client, body)
    assert status == STATUS_PERMANENT and "<max_nbytes>" in message


# --- sizes ------------------------------------------------------------------------------


def test_nbytes_over_max_nbytes_is_refused(project, client, upload_key):
    status, message, _ = post(client, upload_body("big_out", b"x" * 10, upload_key, nbytes=100001))
    assert status == STATUS_PERMANENT and "exceeds the limit of 100000 bytes" in message
    assert not stored(project, "big_out").exists()


def test_body_longer_than_nbytes_is_refused_and_nothing_is_written(project, client, upload_key):
    status, message, _ = post(client, upload_body("liar_out", b"y" * 5000, upload_key, nbytes=100))
    assert status == STATUS_PERMANENT and "more than the 100 bytes" in message
    assert not stored(project, "liar_out").exists()


def test_body_longer_than_nbytes_without_content_length_never_grows_the_file(project, upload_key):
    """A chunked body (no Content-Length): the excess is found while streaming."""
    handler = UploadHandler.for_project(project)
    body = upload_body("liar_out", b"z" * 300000, upload_key, nbytes=70000)
    reply = handler.handle(io.BytesIO(body), None)
    assert reply.status == STATUS_PERMANENT
    # The file is opened (created empty) before the body is read; the excess is found before
    # any byte of it is written.
    assert stored(project, "liar_out").read_bytes() == b""


def test_body_exactly_nbytes_without_content_length_is_stored(project, upload_key):
    handler = UploadHandler.for_project(project)
    data = os.urandom(200000)
    reply = handler.handle(io.BytesIO(upload_body("chunked_out", data, upload_key, max_nbytes=10**6)), None)
    assert reply.status == STATUS_OK
    assert stored(project, "chunked_out").read_bytes() == data


def test_through_the_blueprint_without_content_length(project, client, upload_key):
    data = b"streamed" * 1000
    body = upload_body("stream_out", data, upload_key)
    response = client.post(UPLOAD_PATH, input_stream=io.BytesIO(body),
                           environ_overrides={"wsgi.input_terminated": True},
                           content_type="application/x-www-form-urlencoded")
    assert parse_reply(response.get_data(as_text=True))[0] == STATUS_OK
    assert stored(project, "stream_out").read_bytes() == data


# --- resuming ---------------------------------------------------------------------------


def test_resume_from_an_offset(project, client, upload_key):
    data = os.urandom(20000)
    status, message, _ = post(client, upload_body("resume_out", data[:8000], upload_key, nbytes=20000))
    assert status == STATUS_TRANSIENT and "resume at offset 8000" in message
    assert post(client, size_query("resume_out")) == (STATUS_OK, None, 8000)
    assert post(client, upload_body("resume_out", data[8000:], upload_key, offset=8000)) == (STATUS_OK, None, None)
    assert stored(project, "resume_out").read_bytes() == data
    assert post(client, size_query("resume_out")) == (STATUS_OK, None, 20000)


def test_offset_past_the_stored_bytes_is_transient(project, client, upload_key):
    status, message, _ = post(client, upload_body("gap_out", b"tail", upload_key, offset=50))
    assert status == STATUS_TRANSIENT and "fewer than offset 50" in message


def test_offset_at_nbytes_is_already_done(project, client, upload_key):
    assert post(client, upload_body("done_out", b"", upload_key, nbytes=10, offset=10))[0] == STATUS_OK
    assert not stored(project, "done_out").exists()


def test_reupload_of_a_longer_stale_file_ends_at_nbytes(project, client, upload_key):
    path = stored(project, "stale_out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"S" * 500)
    assert post(client, upload_body("stale_out", b"fresh", upload_key))[0] == STATUS_OK
    assert path.read_bytes() == b"fresh"


def test_file_size_of_a_missing_file_is_zero(client):
    assert post(client, size_query("never_uploaded")) == (STATUS_OK, None, 0)


def test_file_size_query_with_a_bad_name_is_refused(client):
    status, message, size = post(client, size_query("../../etc/passwd"))
    assert status == STATUS_PERMANENT and size is None


# --- names and malformed requests -------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", "x\x01y", "x..y", ".hidden/../x"])
def test_path_tricks_are_refused(project, client, upload_key, tmp_path, name):
    before = sorted(p for p in tmp_path.rglob("*"))
    status, message, _ = post(client, upload_body(name, b"evil", upload_key))
    assert status == STATUS_PERMANENT and message
    assert sorted(p for p in tmp_path.rglob("*")) == before
    ignoring = make_client(dataclasses.replace(project, ignore_upload_certificates=True))
    assert post(ignoring, upload_body(name, b"evil", None))[0] == STATUS_PERMANENT
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("body, expected", [
    (b"", "no <data> line"),
    (b"<data_server_request>\n<file_upload>\n<file_info>\n<name>x_out</name>\n</file_info>\n"
     b"<nbytes>4</nbytes>\n<offset>0</offset>\nDATA", "no <data> line"),
    (b"<data_server_request>\n<nbytes>4</nbytes>\n<data>\nDATA", "no <name>"),
    (b"<data_server_request>\n<name>x_out</name>\n<data>\nDATA", "<nbytes> is missing"),
    (b"<data_server_request>\n<name>x_out</name>\n<nbytes>-4</nbytes>\n<data>\nDATA", "<nbytes> is missing"),
    (b"<data_server_request>\n<name>x_out</name>\n<nbytes>four</nbytes>\n<data>\nDATA", "not a number"),
    (b"<data_server_request>\n<name>x_out</name>\n<nbytes>nan</nbytes>\n<data>\nDATA", "not a finite"),
    (b"<data_server_request>\n<name>x_out</name>\n<nbytes>4</nbytes>\n<offset>-1</offset>\n<data>\nDATA",
     "<offset> is negative"),
    (b"<data_server_request>\n" + b" " * (70 * 1024) + b"<data>\nDATA", "longer than 65536 bytes"),
    (b"x" * (200 * 1024), "longer than 65536 bytes"),
])
def test_malformed_requests_get_a_permanent_error(project, body, expected):
    client = make_client(dataclasses.replace(project, ignore_upload_certificates=True))
    status, message, _ = post(client, body)
    assert status == STATUS_PERMANENT and expected in message


def test_garbage_bytes_get_an_error_and_the_server_keeps_serving(project, client, upload_key):
    for seed in range(20):
        garbage = os.urandom(100 + seed * 997)
        status, message, _ = post(client, garbage)
        assert status == STATUS_PERMANENT and message
    assert post(client, upload_body("after_garbage_out", b"ok", upload_key))[0] == STATUS_OK


def test_error_messages_are_escaped(client, upload_key):
    response = client.post(UPLOAD_PATH, data=upload_body("a<b>&c", b"x", upload_key))
    text = response.get_data(as_text=True)
    assert "<message>" in text and "a&lt;b&gt;&amp;c" in text


# --- concurrency ------------------------------------------------------------------------


class GatedStream(io.RawIOBase):
    """A request body that stops after its first part until the test opens the gate."""

    def __init__(self, first: bytes, rest: bytes, gate: threading.Event, reached: threading.Event):
        self._first, self._rest, self._gate, self._reached = first, rest, gate, reached

    def read(self, size: int = -1) -> bytes:
        if self._first:
            chunk, self._first = self._first[:size], self._first[size:]
            return chunk
        self._reached.set()
        assert self._gate.wait(10)
        chunk, self._rest = self._rest[:size], self._rest[size:]
        return chunk


def test_a_second_upload_of_a_file_being_written_is_told_to_retry(project, upload_key):
    handler = UploadHandler.for_project(project)
    data = os.urandom(300000)
    body = upload_body("busy_out", data, upload_key, max_nbytes=10**6)
    gate, reached, replies = threading.Event(), threading.Event(), []
    first = threading.Thread(target=lambda: replies.append(
        handler.handle(GatedStream(body[:len(body) - 150000], body[len(body) - 150000:], gate, reached),
                       len(body))))
    first.start()
    try:
        assert reached.wait(10), "the first upload never started writing"
        second = handler.handle(io.BytesIO(upload_body("busy_out", b"other", upload_key)), None)
        assert second.status == STATUS_TRANSIENT and "another upload" in second.message
    finally:
        gate.set()
        first.join(10)
    assert [reply.status for reply in replies] == [STATUS_OK]
    assert stored(project, "busy_out").read_bytes() == data


def test_many_concurrent_uploads_of_one_file_never_interleave(project, client, upload_key):
    data = os.urandom(400000)
    body = upload_body("race_out", data, upload_key, max_nbytes=10**6)
    statuses: list[int] = []
    app = client.application

    def upload():
        statuses.append(post(app.test_client(), body)[0])

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(statuses) == 8 and set(statuses) <= {STATUS_OK, STATUS_TRANSIENT} and STATUS_OK in statuses
    assert stored(project, "race_out").read_bytes() == data


def test_a_lock_held_by_another_process_defers_the_upload(project, client, upload_key):
    """Stock BOINC's handler takes POSIX record locks; ours must respect them."""
    path = stored(project, "shared_out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(path)!r}, os.O_WRONLY)\nfcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, message, _ = post(client, upload_body("shared_out", b"data", upload_key))
        assert status == STATUS_TRANSIENT and "another upload" in message
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert post(client, upload_body("shared_out", b"data", upload_key))[0] == STATUS_OK


# --- over a real socket -------------------------------------------------------------------


def test_uploads_through_waitress_with_and_without_content_length(project, upload_key):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(project))
    first, second = os.urandom(50000), os.urandom(30000)
    with serving(app) as base:
        connection = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "User-Agent": "BOINC client (x86_64-pc-linux-gnu 7.20.5)"}
        connection.request("POST", UPLOAD_PATH, body=upload_body("sock_out", first, upload_key), headers=headers)
        response = connection.getresponse()
        assert (response.status, response.getheader("Content-Type")) == (200, "text/plain; charset=utf-8")
        assert parse_reply(response.read().decode()) == (STATUS_OK, None, None)
        body = upload_body("chunk_out", second, upload_key)
        connection.request("POST", UPLOAD_PATH, body=iter([body[:700], body[700:20000], body[20000:]]),
                           headers={**headers, "Transfer-Encoding": "chunked"}, encode_chunked=True)
        assert parse_reply(connection.getresponse().read().decode()) == (STATUS_OK, None, None)
        liar = upload_body("liar_out", second, upload_key, nbytes=1000)
        connection.request("POST", UPLOAD_PATH, body=iter([liar]), encode_chunked=True,
                           headers={**headers, "Transfer-Encoding": "chunked"})
        assert parse_reply(connection.getresponse().read().decode())[0] == STATUS_PERMANENT
        connection.close()
    assert stored(project, "sock_out").read_bytes() == first
    assert stored(project, "chunk_out").read_bytes() == second
    liar_path = stored(project, "liar_out")  # waitress counts a chunked body before the app runs
    assert not liar_path.exists()


def test_a_name_cannot_forge_log_lines(client, upload_key, caplog):
    caplog.set_level(logging.INFO, logger="boinc_ext.server.uploads")
    post(client, upload_body("out\nupload complete: forged", b"x", upload_key))
    post(client, size_query("out\nfile size query: forged"))
    assert caplog.records and all("\n" not in record.getMessage() for record in caplog.records)
