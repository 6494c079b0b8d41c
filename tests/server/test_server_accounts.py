"""Account web RPCs and account creation, against the real MariaDB project database; the
last tests let a real BOINC client make the RPCs through a waitress server."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import time
from types import MappingProxyType

import pytest
from flask import Flask

from boinc_ext.boinc.db import Database
from boinc_ext.project.create import ProjectSpec, create_project
from boinc_ext.server import accounts, user_accounts
from boinc_ext.server.accounts import create_blueprint
from boinc_ext.server.http_db import EVENT_RECONNECT, ThreadDatabases
from boinc_ext.server.user_accounts import create_account, passwd_hash_of
from boinc_ext.boinc.xmlutil import parse_xml

from boinc_ext.local.volunteer import Volunteer, boinc_available
from wsgi_server import bound_loopback_socket, serving

EMAIL = "Alice@Example.org"
PASSWORD = "correct horse"
HASH = passwd_hash_of(PASSWORD, EMAIL)
DECLARATION = b'<?xml version="1.0" encoding="ISO-8859-1" ?>\n'


def make_client(config, databases=None):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(config, databases))
    return app.test_client()


@pytest.fixture
def databases(project):
    databases = ThreadDatabases.for_project(project)
    yield databases
    databases.close_all()


@pytest.fixture
def client(project, databases):
    return make_client(project, databases)


def rpc(client, script: str, **params):
    response = client.get(f"/test/{script}", query_string=params)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml"
    body = response.get_data()
    assert body.startswith(DECLARATION)
    return parse_xml(body, script)


def error_of(root) -> tuple[int, str] | None:
    if root.tag != "error":
        return None
    return int(root.findtext("error_num")), root.findtext("error_msg")


def with_options(config, **options):
    return dataclasses.replace(config, options=MappingProxyType({**config.options, **options}))


def users(db: Database, email: str) -> list[dict]:
    return db.query("select * from user where email_addr = %s", (email,))


# --- get_project_config -----------------------------------------------------------------


def test_project_config(client, project):
    root = rpc(client, "get_project_config.php")
    assert root.tag == "project_config"
    assert root.findtext("name") == project.long_name
    assert root.findtext("master_url") == "http://127.0.0.1:8999/test/"
    assert root.findtext("web_rpc_url_base") == "http://127.0.0.1:8999/test/"
    assert (root.findtext("web_stopped"), root.findtext("sched_stopped")) == ("0", "0")
    assert root.findtext("min_passwd_length") == "6"
    assert root.find("account_creation_disabled") is None
    names = [p.findtext("platform_name") for p in root.iterfind("platforms/platform")]
    assert "x86_64-pc-linux-gnu" in names


def test_project_config_lists_plan_classes_of_app_versions(client, project_db):
    platform_id = project_db.scalar("select id from platform where name = 'x86_64-pc-linux-gnu'")
    app_id = project_db.scalar("select min(id) from app")
    project_db.execute("insert into app_version (create_time, appid, version_num, platformid, xml_doc, "
                       "plan_class) values (0, %s, 100, %s, '', 'vbox64')", (app_id, platform_id))
    root = rpc(client, "get_project_config.php")
    entries = {(p.findtext("platform_name"), p.findtext("plan_class"))
               for p in root.iterfind("platforms/platform")}
    assert ("x86_64-pc-linux-gnu", "vbox64") in entries


def test_project_config_shows_disabled_creation_and_stopped_scheduler(project):
    (project.project_dir / "stop_sched").touch()
    root = rpc(make_client(with_options(project, disable_account_creation="1", min_passwd_length="8")),
               "get_project_config.php")
    assert root.find("account_creation_disabled") is not None
    assert root.findtext("sched_stopped") == "1"
    assert root.findtext("min_passwd_length") == "8"


# --- create_account ---------------------------------------------------------------------


def test_create_account_makes_a_complete_user_row(client, project_db, caplog):
    caplog.set_level(logging.INFO, logger="boinc_ext.server.accounts")
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
    authenticator = root.findtext("authenticator")
    assert root.tag == "account_out" and re.fullmatch(r"[0-9a-f]{32}", authenticator)
    [user] = users(project_db, "alice@example.org")
    assert user["authenticator"] == authenticator
    assert user["name"] == "Alice" and user["passwd_hash"] == HASH
    assert re.fullmatch(r"[0-9a-f]{32}", user["cross_project_id"])
    assert user["cross_project_id"] != authenticator
    assert user["create_time"] > 0 and user["teamid"] == 0 and user["total_credit"] == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{user_accounts.EVENT_ACCOUNT_CREATED}: user {user['id']} <alice@example.org>"]


def test_create_account_again_with_the_same_password_returns_the_same_account(client, project_db):
    first = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
    again = rpc(client, "create_account.php", email_addr=EMAIL.upper(), passwd_hash=HASH.upper(),
                user_name="Someone Else")
    assert again.findtext("authenticator") == first.findtext("authenticator")
    assert len(users(project_db, "alice@example.org")) == 1


def test_create_account_with_another_password_is_not_unique(client, project_db):
    rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=passwd_hash_of("other", EMAIL),
               user_name="Alice")
    assert error_of(root)[0] == -137
    assert len(users(project_db, "alice@example.org")) == 1


def test_create_account_with_a_taken_name_is_not_unique(client, project_db):
    rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
    root = rpc(client, "create_account.php", email_addr="bob@example.org",
               passwd_hash=passwd_hash_of("pw", "bob@example.org"), user_name="Alice")
    assert error_of(root) == (-137, "user name 'Alice' is already taken")
    assert users(project_db, "bob@example.org") == []


@pytest.mark.parametrize("email", ["", "alice", "alice@", "@example.org", "alice@localhost",
                                   "al ice@example.org", "alice@exa_mple.org", "a<b>@example.org",
                                   "x" * 190 + "@example.org"])
def test_bad_email_is_refused(client, project_db, email):
    root = rpc(client, "create_account.php", email_addr=email, passwd_hash=HASH, user_name="Alice")
    assert error_of(root)[0] == -205
    assert project_db.scalar("select count(*) from user") == 0


@pytest.mark.parametrize("passwd_hash", ["", "abc", HASH[:31], HASH + "0", "g" * 32, PASSWORD])
def test_bad_passwd_hash_is_refused(client, project_db, passwd_hash):
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=passwd_hash, user_name="Alice")
    assert error_of(root)[0] == -1 and "32 hexadecimal" in error_of(root)[1]
    assert project_db.scalar("select count(*) from user") == 0


@pytest.mark.parametrize("name", ["", " Alice", "Alice ", "12345", "1e5", "<b>Alice</b>", "A&B",
                                  "tab\there", "x" * 192])
def test_bad_user_name_is_refused(client, project_db, name):
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name=name)
    assert error_of(root)[0] == -188
    assert project_db.scalar("select count(*) from user") == 0


def test_missing_parameters_are_refused(client):
    assert error_of(rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH))[0] == -1
    assert error_of(rpc(client, "lookup_account.php"))[0] == -1


def test_creation_disabled(project, project_db):
    client = make_client(with_options(project, disable_account_creation="1"))
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
    assert error_of(root)[0] == -208
    assert project_db.scalar("select count(*) from user") == 0


def test_unicode_name_round_trips(client, project_db):
    root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="José Ñandú")
    assert root.tag == "account_out"
    assert users(project_db, "alice@example.org")[0]["name"] == "José Ñandú"


# --- lookup_account ---------------------------------------------------------------------


@pytest.fixture
def alice(project_db) -> str:
    return create_account(project_db, EMAIL, HASH, "Alice")


def test_lookup_without_hash_tells_whether_the_account_exists(client, alice):
    assert rpc(client, "lookup_account.php", email_addr="ALICE@example.org").find("success") is not None
    assert error_of(rpc(client, "lookup_account.php", email_addr="nobody@example.org"))[0] == -136


def test_lookup_with_the_password_hash(client, alice):
    root = rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=HASH)
    assert root.findtext("authenticator") == alice


def test_lookup_with_the_authenticator_hash(client, alice):
    auth_hash = hashlib.md5((alice + "alice@example.org").encode()).hexdigest()
    assert rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=auth_hash).findtext(
        "authenticator") == alice


@pytest.mark.parametrize("passwd_hash", [passwd_hash_of("wrong", EMAIL), "x", "é" * 32])
def test_lookup_with_a_wrong_hash(client, alice, passwd_hash):
    assert error_of(rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=passwd_hash))[0] == -206


def test_lookup_of_an_unknown_account(client):
    assert error_of(rpc(client, "lookup_account.php", email_addr="nobody@example.org",
                        passwd_hash=HASH))[0] == -136


def test_am_get_info(client, alice, project_db):
    root = rpc(client, "am_get_info.php", account_key=alice)
    [user] = users(project_db, "alice@example.org")
    assert root.tag == "am_get_info_reply" and root.find("success") is not None
    assert root.findtext("id") == str(user["id"]) and root.findtext("name") == "Alice"
    assert root.findtext("weak_auth") == f"{user['id']}_" + hashlib.md5((alice + HASH).encode()).hexdigest()
    assert root.findtext("cpid") == hashlib.md5(
        (user["cross_project_id"] + "alice@example.org").encode()).hexdigest()
    assert error_of(rpc(client, "am_get_info.php", account_key="0" * 32))[0] == -136


# --- from Python, and concurrency -------------------------------------------------------


def test_create_account_from_python(project_db):
    authenticator = create_account(project_db, EMAIL, HASH, "Alice")
    assert user_accounts.lookup_account(project_db, EMAIL, HASH) == authenticator
    with pytest.raises(user_accounts.AccountNotUnique):
        create_account(project_db, EMAIL, passwd_hash_of("x", EMAIL), "Alice")
    with pytest.raises(user_accounts.BadEmailAddress):
        create_account(project_db, "nope", HASH, "Alice")


def test_concurrent_creates_of_one_email_make_one_user(project, project_db):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create():
        with Database.for_project(project) as db:
            barrier.wait(10)
            results.append(create_account(db, EMAIL, HASH, "Alice"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8 and len(set(results)) == 1
    assert len(users(project_db, "alice@example.org")) == 1


def test_losing_the_insert_race_returns_the_winners_account(project, project_db):
    """The loser has already looked and found nothing when the winner's row commits: its
    INSERT waits on the unique key, fails as a duplicate, and it answers with that row."""
    winner = Database.for_project(project)
    results: list = []
    with winner.transaction():
        winning = create_account(winner, EMAIL, HASH, "Alice")  # uncommitted, holds the key lock

        def lose():
            with Database.for_project(project) as db:
                try:
                    results.append(create_account(db, EMAIL, HASH, "Alice 2"))
                except user_accounts.AccountError as exc:
                    results.append(exc)

        loser = threading.Thread(target=lose)
        loser.start()
        _wait_for_lock_wait(project_db)
    loser.join(30)
    winner.close()
    assert results == [winning]
    assert len(users(project_db, "alice@example.org")) == 1


def _wait_for_lock_wait(db: Database, timeout: float = 10.0) -> None:
    """Until another connection's INSERT into user has been running for a while, which an
    unblocked one-row insert never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.scalar("select count(*) from information_schema.processlist "
                     "where info like 'insert into user%%' and time_ms > 300"):
            return
        time.sleep(0.05)
    raise AssertionError("the second insert never waited on the first one's lock")


# --- database trouble -------------------------------------------------------------------


def test_database_outage_gives_a_transient_error_and_the_server_keeps_serving(project):
    down = dataclasses.replace(project, db_host="127.0.0.1:1")
    client = make_client(down)
    for _ in range(2):
        root = rpc(client, "create_account.php", email_addr=EMAIL, passwd_hash=HASH, user_name="Alice")
        assert error_of(root)[0] == -138
        assert error_of(rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=HASH))[0] == -138
    root = rpc(client, "get_project_config.php")
    assert root.tag == "project_config" and root.findtext("master_url") == project.master_url


def test_a_killed_connection_is_replaced(client, project, mariadb, alice, caplog):
    assert rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=HASH).findtext("authenticator")
    with Database(mariadb.settings(project.db_name)) as admin:
        ids = [row["id"] for row in admin.query(
            "select id from information_schema.processlist where db = %s and id <> connection_id()",
            (project.db_name,))]
        assert ids
        for connection_id in ids:
            admin.execute(f"kill connection {int(connection_id)}")
    caplog.set_level(logging.INFO, logger="boinc_ext.server.http_db")
    root = rpc(client, "lookup_account.php", email_addr=EMAIL, passwd_hash=HASH)
    assert root.findtext("authenticator") == alice
    assert any(r.getMessage().startswith(EVENT_RECONNECT) for r in caplog.records)


# --- a real BOINC client ----------------------------------------------------------------


@pytest.fixture
def served_project(tmp_path, db_settings):
    """A project whose master URL names the port of a waitress server serving it."""
    if boinc_available() is not None:
        pytest.skip(boinc_available())
    sock = bound_loopback_socket()
    port = sock.getsockname()[1]
    config = create_project(ProjectSpec(project_dir=tmp_path / "proj", name="rp", db=db_settings,
                                        master_url=f"http://127.0.0.1:{port}/rp/"))
    databases = ThreadDatabases.for_project(config)
    app = Flask(__name__)
    app.register_blueprint(accounts.create_blueprint(config, databases))
    try:
        with serving(app, sock):
            yield config
    finally:
        databases.close_all()


def test_a_real_client_creates_and_looks_up_an_account(served_project, tmp_path):
    config = served_project
    url = config.master_url
    with Volunteer(tmp_path / "client", network_test_url=url) as client:
        created = client.boinccmd("--create_account", url, "Carol@Example.org", "s3cret-pw", "Carol")
        key = re.search(r"account key: ([0-9a-f]{32})", created)
        assert key, created
        looked_up = client.boinccmd("--lookup_account", url, "carol@example.org", "s3cret-pw")
        assert f"account key: {key.group(1)}" in looked_up, looked_up
        wrong = client.boinccmd("--lookup_account", url, "carol@example.org", "wrong-pw")
        assert "poll status: bad password" in wrong and "account key" not in wrong, wrong
        taken = client.boinccmd("--create_account", url, "carol@example.org", "other-pw", "Carol")
        assert "not unique" in taken and "account key" not in taken, taken
    with Database.for_project(config) as db:
        [user] = users(db, "carol@example.org")
    assert user["authenticator"] == key.group(1) and user["name"] == "Carol"
    assert user["passwd_hash"] == passwd_hash_of("s3cret-pw", "carol@example.org")
