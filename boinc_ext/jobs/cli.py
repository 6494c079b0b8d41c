"""`boinc-ext job submit|status|result`: thin wrappers around the jobs API."""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

from boinc_ext.cli_errors import CliError
from boinc_ext.jobs.model import DEFAULT_DEADLINE, DEFAULT_REPLICATION, JobError


def add_commands(commands) -> None:
    job = commands.add_parser("job", help="R jobs: submit, status, result")
    sub = job.add_subparsers(dest="job_command", required=True)

    submit = sub.add_parser("submit", help="submit an R script (and its data); prints the job id")
    submit.add_argument("project_dir", type=Path)
    submit.add_argument("script", type=Path, help="the R script (runs as script.R)")
    submit.add_argument("--data", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
                        help="data files; the script opens each by its file name")
    submit.add_argument("--replication", type=int, default=DEFAULT_REPLICATION,
                        help=f"volunteers that must agree on the result (default {DEFAULT_REPLICATION})")
    submit.add_argument("--deadline", type=int, default=DEFAULT_DEADLINE, metavar="SECONDS",
                        help=f"time a volunteer has for it (default {DEFAULT_DEADLINE})")
    submit.add_argument("--seed", type=int, help="R's random seed (default: a random one, kept with the job)")
    submit.add_argument("--name", help="a unique name (default job_<id>)")
    submit.set_defaults(handler=_cmd_submit, command="job submit")

    status = sub.add_parser("status", help="state, results and error of a job")
    status.add_argument("project_dir", type=Path)
    status.add_argument("id", type=int)
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(handler=_cmd_status, command="job status")

    result = sub.add_parser("result", help="write a done job's result files to a directory")
    result.add_argument("project_dir", type=Path)
    result.add_argument("id", type=int)
    result.add_argument("--out", type=Path, required=True, metavar="OUTDIR")
    result.set_defaults(handler=_cmd_result, command="job result")


def _user_errors(handler):
    """JobErrors are the user's to fix: the CLI prints them without a traceback."""
    @functools.wraps(handler)
    def wrapped(args):
        try:
            return handler(args)
        except JobError as exc:
            raise CliError(str(exc)) from None
    return wrapped


def _open(project_dir: Path):
    from boinc_ext.boinc.config import ProjectConfig
    from boinc_ext.boinc.db import Database
    config = ProjectConfig.load(project_dir)
    return config, Database.for_project(config)


@_user_errors
def _cmd_submit(args) -> int:
    from boinc_ext.jobs.submit import submit_job
    config, db = _open(args.project_dir)
    with db:
        job_id = submit_job(config, db, args.script, args.data, replication=args.replication,
                            deadline=args.deadline, seed=args.seed, name=args.name)
    print(job_id)
    return 0


@_user_errors
def _cmd_status(args) -> int:
    from boinc_ext.jobs.status import job_status
    config, db = _open(args.project_dir)
    with db:
        status = job_status(config, db, args.id)
    if args.json:
        print(json.dumps(dataclasses.asdict(status), indent=2))
    else:
        print(format_status(status))
    return 0


@_user_errors
def _cmd_result(args) -> int:
    from boinc_ext.jobs.result import fetch_result
    config, db = _open(args.project_dir)
    with db:
        paths = fetch_result(config, db, args.id, args.out)
    for path in paths:
        print(path)
    return 0


def format_status(status) -> str:
    r = status.results
    lines = [
        f"job {status.id} ({status.name}): {status.state}",
        f"workunit: {status.workunit_name} (id {status.workunit_id})" if status.workunit_id else "workunit: none yet",
        f"results: {r.unsent} unsent, {r.in_progress} in progress, {r.success} success "
        f"({r.valid} valid), {r.error} error, {r.lost} lost",
        f"replication {status.replication}, deadline {status.deadline} s, seed {status.seed}",
        f"inputs: {', '.join(status.inputs)}",
        f"submitted: {_time(status.create_time)}",
        f"started:   {_time(status.start_time)}",
        f"finished:  {_time(status.finish_time)}",
    ]
    if status.error:
        lines.append(f"error:\n{status.error}")
    return "\n".join(lines)


def _time(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else "-"
