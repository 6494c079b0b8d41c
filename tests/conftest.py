"""Shared fixtures: one private MariaDB server per test session, a fresh database per test."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from boinc_ext.boinc.db import Database, DbSettings
from boinc_ext.local.mariadb import MariaDBServer
from boinc_ext.project.create import ProjectSpec, create_project

_counter = itertools.count()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory) -> MariaDBServer:
    """A real MariaDB server in a private datadir, started for this test session."""
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    server.init()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_settings(mariadb) -> DbSettings:
    """Admin settings naming a database that does not exist yet (unique per test)."""
    name = f"t{os.getpid()}_{next(_counter)}"
    settings = mariadb.settings(name)
    yield settings
    with Database(settings, with_database=False) as server:
        server.execute(f"drop database if exists `{name}`")


@pytest.fixture
def project(tmp_path, db_settings):
    """A freshly created project (directory, keys, database) to work in."""
    spec = ProjectSpec(project_dir=tmp_path / "proj", master_url="http://127.0.0.1:8999/test/",
                       name="test", db=db_settings)
    return create_project(spec)


@pytest.fixture
def project_db(project):
    with Database.for_project(project) as db:
        yield db


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
