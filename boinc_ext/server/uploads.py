"""The file upload handler: BOINC clients POST output files here (boinc-server-facts §6.2).

A request body is a text header, a `<data>` line and then the raw file bytes from
`<offset>` on; or, with no `<data>`, a `<get_file_size>NAME</get_file_size>` query that
lets a client resume. The body is labelled as a form but is never parsed as one: it is
read from the raw stream with a bound on the header, and file bytes go straight to the
upload hierarchy. Replies are always HTTP 200 with a status the client acts on:
0 done, 1 try again later (the bytes received so far are kept), -1 give up.
"""
from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, Response, request
from werkzeug.exceptions import ClientDisconnected

from boinc_ext.boinc.config import ConfigError, ProjectConfig
from boinc_ext.boinc.crypto import KeyFormatError, PublicKey, read_public_key, verify_upload_certificate
from boinc_ext.boinc.hierarchy import BadFileName, check_file_name, hier_path
from boinc_ext.boinc.xmlutil import escape_text
from boinc_ext.server.file_lock import FileLockError, try_lock_exclusive
from boinc_ext.server.url_paths import path_of

log = logging.getLogger("boinc_ext.server.uploads")

STATUS_OK = 0
STATUS_TRANSIENT = 1
STATUS_PERMANENT = -1

MAX_HEADER_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024
UPLOAD_FILE_MODE = 0o664
UPLOAD_PUBLIC_KEY = "upload_public"

EVENT_UPLOADED = "upload complete"
EVENT_ALREADY_UPLOADED = "upload already complete"
EVENT_PARTIAL = "upload partial"
EVENT_DEFERRED = "upload deferred"
EVENT_REFUSED = "upload refused"
EVENT_FILE_SIZE = "file size query"
EVENT_FAILED = "upload handler failed"

_DATA_LINE = re.compile(rb"<data>\r?\n")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class UploadError(Exception):
    """An upload the handler does not accept; `status` tells the client what to do."""

    status = STATUS_PERMANENT


class TransientUploadError(UploadError):
    """Worth retrying later: a busy or short file, a short body, a full disk."""

    status = STATUS_TRANSIENT


class PermanentUploadError(UploadError):
    """Never worth retrying: a bad name, certificate, size or request."""

    status = STATUS_PERMANENT


@dataclass(frozen=True)
class UploadReply:
    status: int
    message: str | None = None
    file_size: int | None = None

    def render(self) -> str:
        lines = ["<data_server_reply>", f"    <status>{self.status}</status>"]
        if self.file_size is not None:
            lines.append(f"    <file_size>{self.file_size}</file_size>")
        if self.message:
            lines.append(f"    <message>{escape_text(self.message)}</message>")
        lines.append("</data_server_reply>")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class UploadHeader:
    """What the text before `<data>` says about the upload."""

    name: str
    nbytes: int
    offset: int
    max_nbytes: float | None
    signature: str

    @classmethod
    def parse(cls, text: str) -> "UploadHeader":
        raw_name = _element_text(text, "name")
        if not raw_name:
            raise PermanentUploadError("the request has no <name>")
        name = check_upload_name(raw_name)  # before it appears in any message or log line
        nbytes = _number(text, "nbytes")
        if nbytes is None or nbytes < 0:
            raise PermanentUploadError(f"{name}: <nbytes> is missing or negative")
        offset = _number(text, "offset") or 0.0
        if offset < 0:
            raise PermanentUploadError(f"{name}: <offset> is negative")
        return cls(name=name, nbytes=int(nbytes), offset=int(offset),
                   max_nbytes=_number(text, "max_nbytes"),
                   signature=_element_text(text, "xml_signature") or "")


def check_upload_name(name: str) -> str:
    """The name, if it is a file name BOINC may store; PermanentUploadError otherwise."""
    if _CONTROL_CHARS.search(name):
        raise PermanentUploadError(f"file name {name!r} contains control characters")
    if ".." in name or name.startswith("/"):
        raise PermanentUploadError(f"file name {name!r} may not contain '..' or start with '/'")
    try:
        return check_file_name(name)
    except BadFileName as exc:
        raise PermanentUploadError(str(exc)) from None


def _element_text(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def _number(text: str, tag: str) -> float | None:
    value = _element_text(text, tag)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise PermanentUploadError(f"<{tag}> {value[:40]!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise PermanentUploadError(f"<{tag}> {value[:40]!r} is not a finite number")
    return number


@dataclass(frozen=True)
class RequestHead:
    """The start of a request body: the header text and what followed its `<data>` line."""

    header: bytes
    data: bytes | None      # None: the body ended without a `<data>` line
    data_offset: int        # where the file bytes start in the body


def read_head(stream: BinaryIO, limit: int = MAX_HEADER_BYTES) -> RequestHead:
    """Reads up to and just past the `<data>` line, or to the end of a body without one;
    refuses a header longer than `limit` bytes."""
    buffer = bytearray()
    while True:
        match = _DATA_LINE.search(buffer)
        if match:
            if match.start() > limit:
                break
            return RequestHead(bytes(buffer[:match.start()]), bytes(buffer[match.end():]), match.end())
        if len(buffer) > limit:
            break
        chunk = _read(stream, CHUNK_BYTES)
        if not chunk:
            return RequestHead(bytes(buffer), None, len(buffer))
        buffer += chunk
    raise PermanentUploadError(f"the request header is longer than {limit} bytes "
                               f"(or its <data> line is missing)")


def _read(stream: BinaryIO, size: int) -> bytes:
    """Reads up to `size` bytes; a client that went away reads as the end of the body."""
    try:
        return stream.read(size)
    except ClientDisconnected:
        return b""


class UploadHandler:
    """Stores uploads for one project; thread-safe (per-file locks, no shared state)."""

    def __init__(self, upload_dir: Path, fanout: int, certificate_key: PublicKey | None):
        self.upload_dir = upload_dir
        self.fanout = fanout
        self.certificate_key = certificate_key

    @classmethod
    def for_project(cls, config: ProjectConfig) -> "UploadHandler":
        key = None
        if not config.ignore_upload_certificates:
            key_path = config.key_dir / UPLOAD_PUBLIC_KEY
            try:
                key = read_public_key(key_path)
            except (OSError, KeyFormatError) as exc:
                raise ConfigError(f"{key_path}: cannot read the upload key ({exc}); it is needed "
                                  f"unless <ignore_upload_certificates> is set") from None
        return cls(config.upload_dir, config.uldl_dir_fanout, key)

    def path_of(self, name: str) -> Path:
        return hier_path(name, self.upload_dir, self.fanout)

    def handle(self, stream: BinaryIO, content_length: int | None) -> UploadReply:
        """Answers one request; bad input becomes an error reply, never an exception."""
        upload = None
        try:
            head = read_head(stream)
            text = head.header.decode("latin-1")
            size_query = _element_text(text, "get_file_size")
            if head.data is None and size_query is not None:
                return self.file_size(size_query)
            if head.data is None:
                raise PermanentUploadError("the request has no <data> line and no <get_file_size>")
            upload = UploadHeader.parse(text)
            self._check_limits(upload)
            body_bytes = None if content_length is None else content_length - head.data_offset
            return self._store(upload, head.data, stream, body_bytes)
        except UploadError as exc:
            event = EVENT_DEFERRED if exc.status == STATUS_TRANSIENT else EVENT_REFUSED
            what = f"{upload.name}, {upload.nbytes} bytes" if upload else "(no valid header)"
            log.warning("%s: %s: %s", event, what, exc)
            return UploadReply(exc.status, str(exc))

    def file_size(self, name: str) -> UploadReply:
        check_upload_name(name)
        try:
            size = self.path_of(name).stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise TransientUploadError(f"{name}: cannot read its size: {exc.strerror}") from None
        log.info("%s: %s has %d bytes", EVENT_FILE_SIZE, name, size)
        return UploadReply(STATUS_OK, file_size=size)

    def _check_limits(self, upload: UploadHeader) -> None:
        if self.certificate_key is not None:
            if not upload.signature:
                raise PermanentUploadError(f"{upload.name}: no upload certificate (<xml_signature>); "
                                           f"this project requires one")
            if upload.max_nbytes is None:
                raise PermanentUploadError(f"{upload.name}: no <max_nbytes>, which the certificate signs")
            if not verify_upload_certificate(upload.name, upload.max_nbytes, upload.signature,
                                             self.certificate_key):
                raise PermanentUploadError(f"{upload.name}: invalid upload certificate")
        if upload.max_nbytes is not None and upload.nbytes > upload.max_nbytes:
            raise PermanentUploadError(f"{upload.name}: file size {upload.nbytes} bytes exceeds "
                                       f"the limit of {upload.max_nbytes:.0f} bytes")

    def _store(self, upload: UploadHeader, data_start: bytes, stream: BinaryIO,
               body_bytes: int | None) -> UploadReply:
        expected = upload.nbytes - upload.offset
        if expected <= 0:
            log.info("%s: %s, %d bytes (offset %d)", EVENT_ALREADY_UPLOADED, upload.name,
                     upload.nbytes, upload.offset)
            return UploadReply(STATUS_OK)
        if body_bytes is not None and body_bytes > expected:
            raise PermanentUploadError(self._too_long(upload))
        path = self.path_of(upload.name)
        fd = self._open(path, upload.name)
        if fd is None:
            return UploadReply(STATUS_OK)
        try:
            self._lock_and_check_offset(fd, upload)
            written = self._copy(fd, upload, data_start, stream)
        finally:
            os.close(fd)
        if written < expected:
            log.info("%s: %s, %d of %d bytes from offset %d; the client resumes", EVENT_PARTIAL,
                     upload.name, written, expected, upload.offset)
            return UploadReply(STATUS_TRANSIENT, f"{upload.name}: got {written} of {expected} bytes; "
                                                 f"resume at offset {upload.offset + written}")
        log.info("%s: %s, %d bytes from offset %d", EVENT_UPLOADED, upload.name, written, upload.offset)
        return UploadReply(STATUS_OK)

    def _open(self, path: Path, name: str) -> int | None:
        """The file opened for writing, or None when it is read-only (already uploaded and
        sealed, which stock BOINC also reports as success)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, UPLOAD_FILE_MODE)
        except PermissionError:
            if path.exists():
                log.info("%s: %s is read-only on the server", EVENT_ALREADY_UPLOADED, name)
                return None
            raise TransientUploadError(f"{name}: cannot create the file on the server") from None
        except OSError as exc:
            raise TransientUploadError(f"{name}: cannot open the file on the server: {exc.strerror}") from None

    def _lock_and_check_offset(self, fd: int, upload: UploadHeader) -> None:
        try:
            locked = try_lock_exclusive(fd)
        except FileLockError as exc:
            raise TransientUploadError(f"{upload.name}: cannot lock the file: {exc.strerror}") from None
        if not locked:
            raise TransientUploadError(f"{upload.name}: another upload of this file is in progress")
        size = os.fstat(fd).st_size
        if size < upload.offset:
            raise TransientUploadError(f"{upload.name}: the server has {size} bytes, "
                                       f"fewer than offset {upload.offset}")

    def _copy(self, fd: int, upload: UploadHeader, data_start: bytes, stream: BinaryIO) -> int:
        """Writes the body from `offset` on; never more than nbytes in all. Returns the
        number of bytes written, fewer than expected if the body ended early."""
        expected = upload.nbytes - upload.offset
        position, written = upload.offset, 0
        chunk = data_start
        while True:
            if len(chunk) > expected - written:
                if written:
                    os.ftruncate(fd, upload.offset)
                raise PermanentUploadError(self._too_long(upload))
            _write_all(fd, chunk, position, upload.name)
            position += len(chunk)
            written += len(chunk)
            if written == expected:
                if _read(stream, 1):
                    os.ftruncate(fd, upload.offset)
                    raise PermanentUploadError(self._too_long(upload))
                break
            chunk = _read(stream, min(CHUNK_BYTES, expected - written + 1))
            if not chunk:
                return written
        if os.fstat(fd).st_size > upload.nbytes:
            os.ftruncate(fd, upload.nbytes)  # left over from an older, longer attempt
        return written

    @staticmethod
    def _too_long(upload: UploadHeader) -> str:
        return (f"{upload.name}: the body holds more than the {upload.nbytes - upload.offset} bytes "
                f"that <nbytes> {upload.nbytes} and <offset> {upload.offset} announce")


def _write_all(fd: int, data: bytes, position: int, name: str) -> None:
    view = memoryview(data)
    while view:
        try:
            count = os.pwrite(fd, view, position)
        except OSError as exc:
            reason = "no space left on the server" if exc.errno == errno.ENOSPC else exc.strerror
            raise TransientUploadError(f"{name}: cannot write the file: {reason}") from None
        view = view[count:]
        position += count


def create_blueprint(config: ProjectConfig) -> Blueprint:
    """POST <upload_url path>: the file upload handler."""
    handler = UploadHandler.for_project(config)
    blueprint = Blueprint("boinc_uploads", __name__)

    @blueprint.post(path_of(config.upload_url, "upload_url"))
    def file_upload_handler() -> Response:
        try:
            reply = handler.handle(request.stream, request.content_length)
        except Exception:  # a bug must not cost the client its upload: it retries later
            log.exception("%s", EVENT_FAILED)
            reply = UploadReply(STATUS_TRANSIENT, "server error; try again later")
        return Response(reply.render(), status=200, mimetype="text/plain")

    return blueprint
