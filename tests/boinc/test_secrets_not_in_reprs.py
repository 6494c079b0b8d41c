"""Passwords and account keys never show in a repr (logs, tracebacks, pytest output)."""

from __future__ import annotations

import dataclasses

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import DbSettings
from boinc_ext.local.grid import LocalGrid
from boinc_ext.local.mariadb import ServerState
from boinc_ext.server.scheduler.request import SchedulerRequest

SECRET = "s3cret-Pa55word"


def _with_required_fields(cls, **given):
    """An instance of a dataclass, every required field not given set to 0."""
    required = {f.name: 0 for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return cls(**(required | given))


def test_db_settings_repr_hides_the_password():
    settings = DbSettings("boinc", user="boincadm", passwd=SECRET)
    assert SECRET not in repr(settings)
    assert "boincadm" in repr(settings)


def test_project_config_repr_hides_the_db_password():
    config = _with_required_fields(ProjectConfig, db_user="boincadm", db_passwd=SECRET)
    assert SECRET not in repr(config)
    assert "boincadm" in repr(config)


def test_private_server_state_repr_hides_the_admin_password():
    assert SECRET not in repr(ServerState(port=3306, socket="/tmp/s", admin_passwd=SECRET))


def test_scheduler_request_repr_hides_the_account_key():
    request = _with_required_fields(SchedulerRequest, authenticator=SECRET, host_cpid="cpid")
    assert SECRET not in repr(request)
    assert "cpid" in repr(request)


def test_local_grid_repr_hides_the_account_keys():
    grid = LocalGrid(base="/tmp/g", db=DbSettings("boinc", passwd=SECRET), authenticators=[SECRET])
    assert SECRET not in repr(grid)
