"""A validation lab on a real project: workunits made by WorkCreator, results by the
transitioner's create_result_rows, then left as a scheduler and upload handler would
leave them (hosts, users and teams with every NOT NULL column, output files written into
the upload hierarchy, need_validate set). Also test-only policies, importable by a
validator subprocess as `validator_fixture:SlowBitwisePolicy`.
"""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from job_templates import IN_TEMPLATE

from boinc_ext.boinc.schema import blank_row
from boinc_ext.boinc.hierarchy import hier_path
from boinc_ext.transitioner.results import create_result_rows
from boinc_ext.boinc.states import (
    OUTCOME_SUCCESS,
    SERVER_STATE_IN_PROGRESS,
    SERVER_STATE_OVER,
)
from boinc_ext.validator.bitwise import BitwisePolicy
from boinc_ext.validator.daemon import Validator, ValidatorOptions
from boinc_ext.validator.output_files import parse_file_refs
from boinc_ext.boinc.work import WorkCreator, WorkunitRequest

# result.rds is validated; stdout.txt is not; extra.txt may be missing.
OUT_TEMPLATE = """<output_template>
    <file_info><name><OUTFILE_0/></name><max_nbytes>1000000</max_nbytes><url><UPLOAD_URL/></url></file_info>
    <file_info><name><OUTFILE_1/></name><max_nbytes>100000</max_nbytes><url><UPLOAD_URL/></url></file_info>
    <file_info><name><OUTFILE_2/></name><max_nbytes>100000</max_nbytes><url><UPLOAD_URL/></url></file_info>
    <result>
        <file_ref><file_name><OUTFILE_0/></file_name><open_name>result.rds</open_name></file_ref>
        <file_ref><file_name><OUTFILE_1/></file_name><open_name>stdout.txt</open_name><no_validate/></file_ref>
        <file_ref><file_name><OUTFILE_2/></file_name><open_name>extra.txt</open_name><optional/></file_ref>
    </result>
</output_template>
"""
APP = "r_job"
FLOPS = 2e9       # result.flops_estimate of every reported result
ELAPSED = 3600.0  # result.elapsed_time: 2e9 * 3600 * 200 / 86400e9 = 16.67 credit
RUNTIME_CREDIT = FLOPS * ELAPSED * 200 / 86400e9

_unique = itertools.count(1)


class Lab:
    def __init__(self, config, db, tmp_path: Path, out_template: str = OUT_TEMPLATE):
        self.config = config
        self.db = db
        self.tmp_path = tmp_path
        (config.project_dir / "templates" / "v_in").write_text(IN_TEMPLATE)
        (config.project_dir / "templates" / "v_out").write_text(out_template)
        self.out_template = out_template
        self.creator = WorkCreator(config, db, APP, "templates/v_in", "templates/v_out")
        self.script = tmp_path / "job.R"
        self.script.write_text("x <- 1\n")
        self.app_version_id = self._insert("app_version", appid=self.creator.app_id, version_num=100,
                                           platformid=1, plan_class="validator_test", create_time=int(time.time()),
                                           xml_doc="")

    # --- people and machines --------------------------------------------------------------------
    def _insert(self, table: str, **values) -> int:
        row = blank_row(table)
        row.update(values)
        columns = ", ".join(f"`{c}`" for c in row)
        return self.db.insert(f"insert into `{table}` ({columns}) values ({', '.join(['%s'] * len(row))})",
                              list(row.values()))

    def team(self) -> int:
        n = next(_unique)
        return self._insert("team", name=f"team{n}", userid=0, create_time=int(time.time()), expavg_time=0)

    def user(self, teamid: int = 0) -> int:
        n = next(_unique)
        return self._insert("user", email_addr=f"u{n}@example.org", name=f"user{n}",
                            authenticator=f"{n:032x}", teamid=teamid, create_time=int(time.time()),
                            cross_project_id=f"{n:032x}", passwd_hash="x")

    def host(self, userid: int) -> int:
        return self._insert("host", userid=userid, create_time=int(time.time()), host_cpid=f"{next(_unique):032x}")

    def row(self, table: str, row_id: int) -> dict:
        return self.db.query_one(f"select * from `{table}` where id = %s", (row_id,))

    def hav(self, host_id: int) -> dict | None:
        return self.db.query_one("select * from host_app_version where host_id = %s and app_version_id = %s",
                                 (host_id, self.app_version_id))

    # --- workunits and results ------------------------------------------------------------------
    def workunit(self, name: str, n_results: int | None = None, opaque: float = 0.0, **params) -> int:
        data = self.tmp_path / f"{name}.csv"
        data.write_text(f"{name}\n")
        wu_id = self.creator.create(WorkunitRequest(name, [self.script, data], params=params, opaque=opaque))
        wu = self.wu(wu_id)
        count = wu["target_nresults"] if n_results is None else n_results
        create_result_rows(self.db, wu, count, 0, int(time.time()), self.config, None, self.out_template)
        return wu_id

    def many_reported(self, prefix: str, hosts: list[int], n: int, outputs: dict[str, bytes]) -> list[int]:
        """n workunits of two results each, reported by hosts[i % len] and hosts[(i + 1) % len]
        with the same outputs, made in bulk (as `workunit` and `report` would make them)."""
        data = self.tmp_path / f"{prefix}.csv"
        data.write_text(f"{prefix}\n")
        ids = self.creator.create_many([WorkunitRequest(f"{prefix}_{i}", [self.script, data]) for i in range(n)])
        now = int(time.time())
        marks = ", ".join(map(str, ids))
        with self.db.transaction():
            for wu in self.db.query(f"select * from workunit where id in ({marks}) order by id"):
                create_result_rows(self.db, wu, 2, 0, now, self.config, None, self.out_template)
        rows = self.db.query(f"select id, name, workunitid, xml_doc_in from result where workunitid in ({marks}) "
                             f"order by id")
        reports = []
        for index, row in enumerate(rows):
            for ref in parse_file_refs(row["xml_doc_in"], row["name"]):
                if outputs.get(ref.open_name) is not None:
                    path = hier_path(ref.file_name, self.config.upload_dir, self.config.uldl_dir_fanout)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(outputs[ref.open_name])
            host_id = hosts[(index // 2 + index % 2) % len(hosts)]
            reports.append((host_id, self.row("host", host_id)["userid"], now - 7200, now, self.app_version_id,
                            FLOPS, SERVER_STATE_OVER, OUTCOME_SUCCESS, ELAPSED, row["id"]))
        with self.db.transaction():
            self.db.executemany("update result set hostid = %s, userid = %s, sent_time = %s, received_time = %s, "
                                "app_version_id = %s, app_version_num = 100, flops_estimate = %s, server_state = %s, "
                                "outcome = %s, elapsed_time = %s, client_state = 5 where id = %s", reports)
            self.db.execute(f"update workunit set need_validate = 1, transition_time = %s where id in ({marks})",
                            (now,))
        return ids

    def wu(self, wu_id: int) -> dict:
        return self.db.query_one("select * from workunit where id = %s", (wu_id,))

    def results(self, wu_id: int) -> dict[str, dict]:
        rows = self.db.query("select * from result where workunitid = %s order by id", (wu_id,))
        return {r["name"]: r for r in rows}

    def result(self, name: str) -> dict:
        return self.db.query_one("select * from result where name = %s", (name,))

    def add_result(self, wu_id: int) -> str:
        """One more result, as the transitioner creates it when target_nresults goes up."""
        wu = self.wu(wu_id)
        suffix = len(self.results(wu_id))
        return create_result_rows(self.db, wu, 1, suffix, int(time.time()), self.config, None,
                                  self.out_template)[0]

    def send(self, name: str, host_id: int) -> None:
        now = int(time.time())
        userid = self.row("host", host_id)["userid"]
        self.db.execute("update result set server_state = %s, hostid = %s, userid = %s, sent_time = %s, "
                        "report_deadline = %s, app_version_id = %s, app_version_num = 100, flops_estimate = %s "
                        "where name = %s", (SERVER_STATE_IN_PROGRESS, host_id, userid, now - 7200, now + 86400,
                                            self.app_version_id, FLOPS, name))

    def report(self, name: str, host_id: int, outputs: dict[str, bytes | None], elapsed: float = ELAPSED) -> None:
        """The result sent to `host_id`, its outputs uploaded (None: not uploaded), reported
        successful; the workunit flagged for validation."""
        result = self.result(name)
        if result["hostid"] != host_id:
            self.send(name, host_id)
        xml_doc_out = []
        for ref in parse_file_refs(result["xml_doc_in"], name):
            content = outputs.get(ref.open_name)
            if content is None:
                continue
            path = hier_path(ref.file_name, self.config.upload_dir, self.config.uldl_dir_fanout)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            xml_doc_out.append(f"<file_info>\n    <name>{ref.file_name}</name>\n    <nbytes>{len(content)}</nbytes>\n"
                               f"</file_info>\n")
        now = int(time.time())
        self.db.execute("update result set server_state = %s, outcome = %s, client_state = 5, received_time = %s, "
                        "elapsed_time = %s, cpu_time = %s, exit_status = 0, xml_doc_out = %s where name = %s",
                        (SERVER_STATE_OVER, OUTCOME_SUCCESS, now, elapsed, elapsed, "".join(xml_doc_out), name))
        self.db.execute("update workunit set need_validate = 1, transition_time = %s where id = %s",
                        (now, result["workunitid"]))

    def output_path(self, name: str, open_name: str) -> Path:
        ref = next(r for r in parse_file_refs(self.result(name)["xml_doc_in"], name) if r.open_name == open_name)
        return hier_path(ref.file_name, self.config.upload_dir, self.config.uldl_dir_fanout)

    # --- the daemon -----------------------------------------------------------------------------
    def validator(self, policy=None, database=None, policy_spec: str | None = None, **extra) -> Validator:
        """A one-pass validator for the app (on its own connection to the project's
        database unless `database` is given); `policy_spec` is what --policy would say."""
        if policy_spec:
            extra["policy"] = policy_spec
        extra.setdefault("max_granted_credit", 200 * 1000 * 365.0)
        options = ValidatorOptions(one_pass=True, app=APP, **extra)
        return Validator(self.config, options, database, policy=policy)

    def run(self, policy=None, database=None, **extra) -> int:
        """One in-process pass of the validator for the app."""
        return self.validator(policy, database, **extra).run()


class SlowBitwisePolicy(BitwisePolicy):
    """Bitwise, but `same()` first touches `marker` (when given) and sleeps `delay`
    seconds: a window in which tests kill the daemon mid-workunit."""

    name = "slow_bitwise"
    settings: ClassVar[Mapping[str, Any]] = {"delay": float, "marker": str}

    def __init__(self, delay: float = 0.0, marker: str = ""):
        super().__init__(delay=delay, marker=marker)
        self.delay = delay
        self.marker = marker

    def same(self, a, b) -> bool:
        if self.marker:
            Path(self.marker).touch()
        time.sleep(self.delay)
        return super().same(a, b)


class ExplodingPolicy(BitwisePolicy):
    """Bitwise, but a bug (not a validation error) on outputs reading "explode": a
    project's own policy, as `--policy validator_fixture:ExplodingPolicy` loads it."""

    name = "exploding"

    def prepare(self, files):
        if any(f.present and Path(f.path).read_bytes() == b"explode\n" for f in files):
            raise RuntimeError("policy bug")
        return super().prepare(files)


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def subprocess_env() -> dict[str, str]:
    """So that a daemon subprocess can import this module for its --policy."""
    env = dict(os.environ)
    tests_dir = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = tests_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
