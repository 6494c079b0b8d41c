"""Project creation, app versions and the private MariaDB, against a real server."""
import os
import re
import subprocess
import sys

import pytest

from boinc_ext.boinc import crypto
from boinc_ext.project.app_versions import AppFile, AppVersionError, add_app_version, parse_version_num
from boinc_ext.boinc.schema import BOINC_TABLES
from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.boinc.db import Database, DbSettings, parse_db_host
from boinc_ext.project.create import ProjectError, ProjectSpec, canonical_master_url, create_project, \
    extend_existing_project
from boinc_ext.boinc.xmlutil import parse_fragment

BOINC_EXT = [sys.executable, "-m", "boinc_ext.cli"]


def test_layout_config_and_keys(project):
    root = project.project_dir
    for name in ("bin", "cgi-bin", "download", "upload", "keys", "templates", "html/user",
                 f"log_{project.host}", f"pid_{project.host}", f"tmp_{project.host}", "project.xml"):
        assert (root / name).exists(), name
    assert project.uldl_dir_fanout == 1024
    assert project.master_url == "http://127.0.0.1:8999/test/"
    assert project.download_url == "http://127.0.0.1:8999/test/download"
    assert "file_upload_handler" in project.upload_url
    assert project.key_dir == root / "keys"
    assert [d.program for d in project.daemons] == ["ext_server", "ext_work_generator", "ext_transitioner",
                                                    "ext_validator", "ext_assimilator", "ext_file_deleter"]
    assert os.access(root / "bin" / "ext_file_deleter", os.X_OK)
    private = crypto.read_private_key(root / "keys" / "code_sign_private")
    assert crypto.read_public_key(root / "keys" / "code_sign_public") == private.public_key
    assert (root / "keys" / "upload_private").stat().st_mode & 0o077 == 0


def test_database_has_stock_tables_ext_tables_and_apps(project_db):
    tables = {r["t"] for r in project_db.query(
        "select table_name t from information_schema.tables where table_schema = database()")}
    assert set(BOINC_TABLES) <= tables
    assert {"ext_schema_version", "ext_job", "ext_job_file"} <= tables
    assert not {t for t in tables if t not in BOINC_TABLES and not t.startswith("ext_")}
    apps = {r["name"] for r in project_db.query("select name from app")}
    assert apps == {"r_job", "mr_map", "mr_reduce"}
    assert project_db.scalar("select name from platform") == "x86_64-pc-linux-gnu"
    engines = {r["engine"] for r in project_db.query(
        "select engine from information_schema.tables where table_schema = database()")}
    assert engines == {"InnoDB"}


def test_db_host_with_port_is_parsed_as_stock_does():
    assert parse_db_host("127.0.0.1:3307") == ("127.0.0.1", 3307)
    assert parse_db_host("dbserver") == ("dbserver", None)
    assert parse_db_host("") == ("localhost", None)
    with pytest.raises(ValueError):
        parse_db_host("h:port")


def test_config_db_settings_connect(project):
    settings = DbSettings.from_config(project)
    assert settings.port and settings.host == "127.0.0.1"
    with Database(settings) as db:
        assert db.scalar("select count(*) from app") == 3


def test_create_refuses_existing_project_and_database(project, tmp_path, db_settings):
    with pytest.raises(ProjectError, match="already a project"):
        create_project(ProjectSpec(project.project_dir, project.master_url, "test", db_settings))
    with pytest.raises(ProjectError, match="already exists"):
        create_project(ProjectSpec(tmp_path / "other", project.master_url, "test", db_settings))
    assert not (tmp_path / "other" / "config.xml").exists()


@pytest.mark.parametrize("url", ["http://localhost:8080/p/", "ftp://1.2.3.4/p/", "127.0.0.1/p"])
def test_master_url_the_client_would_reject_is_refused(url):
    with pytest.raises(ProjectError):
        canonical_master_url(url)


def test_master_url_is_canonicalised():
    assert canonical_master_url("http://EXAMPLE.org:80//p") == "http://example.org:80/p/"


def test_existing_stock_project_gets_only_our_additions(project, project_db):
    """Simulate a stock project: drop our ext tables and apps, add a stock daemon, re-extend."""
    config_path = project.project_dir / "config.xml"
    text = config_path.read_text().replace(
        "<daemons>", "<daemons><daemon><cmd>feeder -d 3</cmd></daemon>"
        "<daemon><cmd>file_deleter -d 2</cmd></daemon>")
    text = re.sub(r"\s*<daemon>\s*<cmd>ext_\w+[^<]*</cmd>\s*</daemon>", "", text)
    config_path.write_text(text)
    project_db.execute("drop table ext_job_file")
    project_db.execute("drop table ext_job")
    project_db.execute("drop table ext_schema_version")
    with project_db.transaction():
        project_db.execute("delete from app")
        project_db.execute("insert into app (create_time, name, user_friendly_name) values (1, 'uc', 'UC')")
    keys_before = {p.name: p.read_bytes() for p in (project.project_dir / "keys").iterdir()}

    config = extend_existing_project(project.project_dir)

    # stock's own deleter and transitioner kept; ours added where stock has none
    assert [d.program for d in config.daemons] == ["feeder", "file_deleter", "ext_work_generator",
                                                   "ext_validator", "ext_assimilator"]
    assert {r["name"] for r in project_db.query("select name from app")} == {"uc", "r_job", "mr_map",
                                                                             "mr_reduce"}
    assert project_db.scalar("select max(version) from ext_schema_version") >= 1
    assert {p.name: p.read_bytes() for p in (project.project_dir / "keys").iterdir()} == keys_before
    assert ProjectConfig.load(project.project_dir).db_passwd == project.db_passwd


def test_existing_mode_refuses_a_non_boinc_database(project, project_db):
    project_db.execute("drop table result")
    with pytest.raises(ProjectError, match="not a BOINC database"):
        extend_existing_project(project.project_dir)


# --- app versions ---------------------------------------------------------------------------
def _app_file(tmp_path, name="mr_map_1.00_x86_64-pc-linux-gnu.sh", body=b"#!/bin/sh\necho hi\n"):
    path = tmp_path / name
    path.write_bytes(body)
    os.chmod(path, 0o755)
    return path


def test_add_version_signs_and_describes_every_file(project, project_db, tmp_path):
    main = _app_file(tmp_path)
    data = _app_file(tmp_path, "mr_map_data_1.00.txt", b"data\n")
    os.chmod(data, 0o644)
    version_id = add_app_version(project, "mr_map", "1.00", [AppFile(main), AppFile(data, "data.txt")],
                                 api_version="7.20.5")
    row = project_db.query_one("select * from app_version where id = %s", (version_id,))
    assert row["version_num"] == 100 and row["plan_class"] == ""
    elements = parse_fragment(row["xml_doc"].decode(), "xml_doc")
    infos = [e for e in elements if e.tag == "file_info"]
    public = crypto.read_public_key(project.key_dir / "code_sign_public")
    for info, path in zip(infos, (main, data)):
        assert info.findtext("url") == f"{project.download_url}/{path.name}"
        assert crypto.verify_file(project.download_dir / path.name, info.findtext("file_signature"), public)
        assert int(info.findtext("nbytes")) == path.stat().st_size
    assert infos[0].find("executable") is not None and infos[1].find("executable") is None
    version = elements[-1]
    assert version.findtext("app_name") == "mr_map" and version.findtext("api_version") == "7.20.5"
    refs = version.findall("file_ref")
    assert refs[0].find("main_program") is not None and refs[1].findtext("open_name") == "data.txt"
    # never indented: 7.20.5 tolerates it, newer clients do not
    signature_block = row["xml_doc"].decode().split("<file_signature>\n")[1]
    assert re.match(r"[0-9a-f]{64}\n", signature_block)
    assert (project.project_dir / "reread_db").exists()


def test_add_version_bad_inputs(project, project_db, tmp_path):
    main = _app_file(tmp_path)
    with pytest.raises(AppVersionError, match="unknown app"):
        add_app_version(project, "nope", "1.00", [AppFile(main)])
    with pytest.raises(AppVersionError, match="no such file"):
        add_app_version(project, "mr_map", "1.00", [AppFile(tmp_path / "missing")])
    add_app_version(project, "mr_map", "1.00", [AppFile(main)])
    with pytest.raises(AppVersionError, match="already installed"):
        add_app_version(project, "mr_map", "1.00", [AppFile(main)])
    other = tmp_path / "other"
    other.mkdir()
    changed = _app_file(other, main.name, b"#!/bin/sh\necho changed\n")
    with pytest.raises(AppVersionError, match="immutable"):
        add_app_version(project, "mr_map", "1.01", [AppFile(changed)])
    assert project_db.scalar("select count(*) from app_version where appid = (select id from app where name = 'mr_map')") == 1


def test_version_numbers():
    assert parse_version_num("1.05") == 105
    assert parse_version_num("2.5") == 205
    assert parse_version_num("7") == 7
    with pytest.raises(AppVersionError):
        parse_version_num("1.x")


# --- the CLI as a user runs it --------------------------------------------------------------
def test_cli_db_and_project_create(tmp_path):
    db_dir = tmp_path / "db"
    out = subprocess.run(BOINC_EXT + ["db", "start", "--dir", str(db_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        host = re.search(r"--db-host (\S+)", out.stdout).group(1)
        user = re.search(r"--db-user (\S+)", out.stdout).group(1)
        passwd = re.search(r"--db-passwd (\S+)", out.stdout).group(1)
        created = subprocess.run(BOINC_EXT + [
            "project", "create", str(tmp_path / "p"), "--url", "http://127.0.0.1:8123/cli/", "--name", "cli",
            "--db-host", host, "--db-user", user, "--db-passwd", passwd, "--db-name", "cli_db"],
            capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        config = ProjectConfig.load(tmp_path / "p")
        assert config.db_host == host and config.db_name == "cli_db"
        again = subprocess.run(BOINC_EXT + ["project", "create", str(tmp_path / "p"), "--url",
                                            "http://127.0.0.1:8123/cli/", "--db-dir", str(db_dir)],
                               capture_output=True, text=True)
        assert again.returncode == 1 and "already a project" in again.stderr
        status = subprocess.run(BOINC_EXT + ["db", "status", "--dir", str(db_dir)], capture_output=True, text=True)
        assert "running" in status.stdout
    finally:
        stopped = subprocess.run(BOINC_EXT + ["db", "stop", "--dir", str(db_dir)], capture_output=True, text=True)
    assert stopped.stdout.strip() == "stopped"
    status = subprocess.run(BOINC_EXT + ["db", "status", "--dir", str(db_dir)], capture_output=True, text=True)
    assert status.stdout.strip() == "not running"


def test_existing_rewrites_launchers_of_an_older_layout(project, project_db):
    """Launchers installed before the code moved ran `-m boinc_ext.server.transitioner` and
    `-m boinc_ext.file_deleter`, modules that no longer exist; `--existing` rewrites them."""
    bin_dir = project.project_dir / "bin"
    old_modules = {"ext_transitioner": "boinc_ext.server.transitioner", "ext_file_deleter": "boinc_ext.file_deleter"}
    for program, module in old_modules.items():
        (bin_dir / program).write_text(f"#!/bin/sh\nexec {sys.executable} -m {module} \"$@\"\n")
    env = dict(os.environ, BOINC_PROJECT_DIR=str(project.project_dir))
    stale = subprocess.run([str(bin_dir / "ext_transitioner"), "--help"], env=env, capture_output=True, text=True)
    assert stale.returncode != 0 and "No module named" in stale.stderr

    extend_existing_project(project.project_dir)

    for program, module in old_modules.items():
        text = (bin_dir / program).read_text()
        assert module not in text and f"boinc_ext.daemons.launch {program}" in text
        run = subprocess.run([str(bin_dir / program), "-one_pass", "-d", "3"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert f"[{program}] INFO daemon started" in run.stderr


def test_launch_refuses_an_unknown_program():
    run = subprocess.run([sys.executable, "-m", "boinc_ext.daemons.launch", "ext_nope"], capture_output=True, text=True)
    assert run.returncode == 2 and "ext_transitioner" in run.stderr
