"""The embedded BOINC server as one WSGI app: master page, scheduler, web RPCs, file transfer.

For a project without a stock BOINC server (Apache + CGI programs), one process serves the
URLs a BOINC client uses, at the paths the project's config.xml gives them.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.xmlutil import escape_text
from boinc_ext.server import accounts
from boinc_ext.server import downloads
from boinc_ext.server.scheduler import handler as scheduler
from boinc_ext.server import uploads
from boinc_ext.server.http_db import ThreadDatabases


def create_app(config: ProjectConfig) -> Flask:
    app = Flask("boinc_ext.server")
    app.config["MAX_CONTENT_LENGTH"] = None   # each handler bounds its own body
    databases = ThreadDatabases.for_project(config)
    app.extensions["boinc_ext.databases"] = databases
    app.register_blueprint(scheduler.create_blueprint(config, databases))
    app.register_blueprint(uploads.create_blueprint(config))
    app.register_blueprint(downloads.create_blueprint(config))
    app.register_blueprint(accounts.create_blueprint(config, databases))
    _add_master_page(app, config)
    return app


def master_page(config: ProjectConfig) -> str:
    """The project's home page. A client finds the scheduler here: the <link> must start its
    line, with exactly this attribute order; the comment form is read too."""
    url = escape_text(scheduler.scheduler_url(config))
    name = escape_text(config.long_name)
    return ("<!DOCTYPE html>\n<html>\n<head>\n"
            f"<title>{name}</title>\n"
            f'<link rel="boinc_scheduler" href="{url}">\n'
            "</head>\n<body>\n"
            f"<!-- <scheduler>{url}</scheduler> -->\n"
            f"<h1>{name}</h1>\n"
            "<p>A BOINC project running R jobs. To take part, attach a BOINC client to this URL.</p>\n"
            "</body>\n</html>\n")


def _add_master_page(app: Flask, config: ProjectConfig) -> None:
    path = urlsplit(config.master_url).path or "/"
    page = master_page(config)

    def home():
        return Response(page, mimetype="text/html")

    app.add_url_rule(path, "master_page", home, methods=["GET", "HEAD"])
    if path.endswith("/") and path != "/":
        app.add_url_rule(path + "index.html", "master_index", home, methods=["GET", "HEAD"])
