"""File downloads: GET <download_url path>/<path> serves files from download_dir.

Clients resume with `Range: bytes=N-` (boinc-server-facts §6.1); werkzeug's conditional
send_file answers single ranges with 206 and Content-Range, unsatisfiable ones with 416,
and anything else with the whole file. Only regular files inside download_dir are served
(hierarchy subdirectories included); directories, missing files and any path that leads
outside, through `..` or a symlink, are 404.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Blueprint, Response, abort, send_file
from werkzeug.security import safe_join

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.server.url_paths import path_of

log = logging.getLogger("boinc_ext.server.downloads")

# Always raw bytes: a guessed type would give `x.gz` a Content-Encoding: gzip header, and
# the client's libcurl would then unpack a file whose md5 is that of the packed bytes.
DOWNLOAD_MIMETYPE = "application/octet-stream"

EVENT_NOT_FOUND = "download not found"


def resolve_download(root: Path, relative: str) -> Path | None:
    """The regular file `relative` names inside `root` (already resolved), or None."""
    joined = safe_join(str(root), relative)
    if joined is None:
        return None
    real = Path(os.path.realpath(joined))
    if real != root and root not in real.parents:
        return None
    return real if real.is_file() else None


def create_blueprint(config: ProjectConfig) -> Blueprint:
    root = Path(os.path.realpath(config.download_dir))
    base = path_of(config.download_url, "download_url").rstrip("/")
    blueprint = Blueprint("boinc_downloads", __name__)

    @blueprint.get(f"{base}/<path:relative>", merge_slashes=False)
    def download(relative: str) -> Response:
        path = resolve_download(root, relative)
        if path is None:
            log.info("%s: %r", EVENT_NOT_FOUND, relative)
            abort(404)
        return send_file(path, mimetype=DOWNLOAD_MIMETYPE, conditional=True, etag=True)

    return blueprint
