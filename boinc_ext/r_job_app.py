"""The `r_job` app of a project: the wrapper as its signed app version, and its templates.

`project create` (and `--existing`) call `install_r_job_app`; it is idempotent, so running
it again after an upgrade installs only a wrapper version the project does not have yet.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from wrapper import API_VERSION, WRAPPER_VERSION
from wrapper.build import build_zipapp

from .app_versions import AppFile, add_app_version, parse_version_num
from .config import ProjectConfig
from .db import Database
from .jobs.r_job_templates import install_r_job_templates

log = logging.getLogger("boinc_ext.r_job_app")

APP_NAME = "r_job"


def install_r_job_app(config: ProjectConfig) -> int | None:
    """Installs the wrapper as r_job's app version unless that version is there; returns
    the new app_version id, or None if nothing was installed."""
    install_r_job_templates(config)
    with Database.for_project(config) as db:
        present = db.scalar(
            "select count(*) from app_version av join app a on a.id = av.appid "
            "where a.name = %s and av.version_num = %s and av.plan_class = ''",
            (APP_NAME, parse_version_num(WRAPPER_VERSION)))
    if present:
        return None
    with tempfile.TemporaryDirectory(prefix="r_job_wrapper-") as tmp:
        program = build_zipapp(Path(tmp))
        return add_app_version(config, APP_NAME, WRAPPER_VERSION, [AppFile(program, main_program=True)],
                               api_version=API_VERSION)
