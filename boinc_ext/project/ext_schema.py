"""The project's own tables (prefixed `ext_`), created and upgraded by numbered migrations.

BOINC's tables are never altered; everything of ours links to them by id. Each migration
runs once; `ext_schema_version` records which ones ran, so `project create --existing`
and upgrades apply only what is missing.

MariaDB cannot roll DDL back, so a migration interrupted half-way leaves some of its
statements done. Every statement is therefore idempotent (`create table if not exists`,
`alter table ... add column if not exists`, `create index if not exists`, `drop ... if
exists`), and the version is recorded only after all of them: running the migration again
completes it.
"""
from __future__ import annotations

import time

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "jobs and their files", [
        """create table if not exists ext_job (
            id integer not null auto_increment primary key,
            create_time integer not null,
            userid integer not null default 0,
            kind varchar(32) not null,
            name varchar(191) not null,
            state varchar(32) not null,
            replication integer not null default 1,
            delay_bound integer not null default 0,
            seed bigint not null default 0,
            workunitid integer not null default 0,
            finish_time integer not null default 0,
            error_msg mediumtext,
            unique key ext_job_name (name),
            key ext_job_state (state),
            key ext_job_user (userid, id),
            key ext_job_wu (workunitid)
        ) engine=InnoDB""",
        """create table if not exists ext_job_file (
            id integer not null auto_increment primary key,
            job_id integer not null,
            role varchar(16) not null,
            logical_name varchar(191) not null,
            physical_name varchar(191) not null,
            md5 char(32) not null,
            nbytes bigint not null,
            unique key ext_job_file_role_name (job_id, role, logical_name)
        ) engine=InnoDB""",
    ]),
]


def applied_version(db) -> int:
    exists = db.scalar("select count(*) from information_schema.tables "
                       "where table_schema = database() and table_name = 'ext_schema_version'")
    if not exists:
        return 0
    return int(db.scalar("select coalesce(max(version), 0) from ext_schema_version"))


def migrate(db) -> list[int]:
    """Applies the missing migrations; returns the versions applied."""
    db.execute("""create table if not exists ext_schema_version (
        version integer not null primary key,
        description varchar(254) not null,
        applied_time integer not null
    ) engine=InnoDB""")
    current = applied_version(db)
    applied = []
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        for statement in statements:
            db.execute(statement)
        with db.transaction():
            db.execute("insert into ext_schema_version values (%s, %s, %s)",
                       (version, description, int(time.time())))
        applied.append(version)
    return applied
