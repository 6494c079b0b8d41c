"""`boinc-ext project create|add-version` and `boinc-ext create-work` (as BOINC's create_work)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from boinc_ext.cli_errors import CliError


def add_commands(commands) -> None:
    _add_project_commands(commands)
    _add_create_work(commands)


def _add_project_commands(commands) -> None:
    project = commands.add_parser("project", help="create a project, install app versions")
    sub = project.add_subparsers(dest="project_command", required=True)
    create = sub.add_parser("create", help="lay out a BOINC project and create its database")
    create.add_argument("dir", type=Path)
    create.add_argument("--url", help="master URL, e.g. http://127.0.0.1:8080/NAME/")
    create.add_argument("--name", help="short project name (defaults to the directory name)")
    create.add_argument("--long-name", default="")
    create.add_argument("--db-host", default="", help="HOST[:PORT] as in config.xml")
    create.add_argument("--db-user", default="")
    create.add_argument("--db-passwd", default="")
    create.add_argument("--db-name", help="defaults to the project name")
    create.add_argument("--db-dir", type=Path, help="use the private server made by `db start --dir`")
    create.add_argument("--existing", action="store_true",
                        help="add our apps, ext_ tables and daemons to an existing stock project")
    create.set_defaults(handler=_cmd_project_create, command="project create")

    add = sub.add_parser("add-version", help="install a signed app version (as update_versions)")
    add.add_argument("dir", type=Path)
    add.add_argument("app")
    add.add_argument("version", help="M.mm, e.g. 1.05")
    add.add_argument("files", nargs="+", type=Path, help="the first one is the main program")
    add.add_argument("--platform", default="x86_64-pc-linux-gnu")
    add.add_argument("--plan-class", default="")
    add.add_argument("--api-version", help="e.g. 7.20.5 (default: found in the main program)")
    add.set_defaults(handler=_cmd_add_version, command="project add-version")


def _cmd_project_create(args) -> int:
    from boinc_ext.boinc.db import DbSettings
    from boinc_ext.project.create import ProjectSpec, create_project, extend_existing_project
    if args.existing:
        config = extend_existing_project(args.dir)
        print(f"added our apps, ext_ tables and daemons to {config.project_dir}")
        return 0
    if not args.url:
        raise CliError("--url is required (e.g. http://127.0.0.1:8080/NAME/)")
    name = args.name or args.dir.resolve().name
    db_name = args.db_name or name
    if args.db_dir:
        from boinc_ext.local.mariadb import MariaDBServer
        db = MariaDBServer(args.db_dir).settings(db_name)
    else:
        from boinc_ext.boinc.db import parse_db_host
        host, port = parse_db_host(args.db_host)
        db = DbSettings(db_name, host, port, args.db_user, args.db_passwd)
    config = create_project(ProjectSpec(args.dir, args.url, name, db, args.long_name))
    print(f"created project {name} in {config.project_dir}")
    print(f"  master URL {config.master_url}, database {config.db_name} on {config.db_host or 'localhost'}")
    print(f"  next: boinc-ext project add-version {config.project_dir} APP VERSION FILES...")
    return 0


def _cmd_add_version(args) -> int:
    from boinc_ext.project.app_versions import AppFile, add_app_version
    from boinc_ext.project.create import require_project
    config = require_project(args.dir)
    files = [AppFile(path) for path in args.files]
    version_id = add_app_version(config, args.app, args.version, files, platform=args.platform,
                                 plan_class=args.plan_class, api_version=args.api_version)
    print(f"installed {args.app} {args.version} ({args.platform}) as app_version {version_id}")
    return 0


_PARAM_FLAGS = {"min_quorum": int, "target_nresults": int, "max_error_results": int,
                "max_total_results": int, "max_success_results": int, "delay_bound": int,
                "rsc_fpops_est": float, "rsc_fpops_bound": float, "rsc_memory_bound": float,
                "rsc_disk_bound": float, "rsc_bandwidth_bound": float, "batch": int}


def _flag(parser, name: str, **kwargs) -> None:
    """Both spellings: ours (--wu-name) and stock create_work's (--wu_name)."""
    dashed = "--" + name.replace("_", "-")
    spellings = [dashed] if dashed == "--" + name else [dashed, "--" + name]
    parser.add_argument(*spellings, dest=name, **kwargs)


def _add_create_work(commands) -> None:
    cw = commands.add_parser("create-work", help="create workunits (as BOINC's create_work)")
    cw.add_argument("--project", type=Path, help="project dir (default: $BOINC_PROJECT_DIR, . or ..)")
    _flag(cw, "appname", help="the app")
    cw.add_argument("--app", dest="appname", help=argparse.SUPPRESS)
    _flag(cw, "wu_template", required=True)
    _flag(cw, "result_template", required=True)
    _flag(cw, "link_inputs", action="store_true", help="hard-link inputs instead of copying")
    cw.add_argument("--stdin", action="store_true",
                    help="batch: one workunit per input line (--wu_name N [--command_line C] FILE...), "
                         "all in one transaction")
    _add_job_flags(cw)
    for name, kind in _PARAM_FLAGS.items():
        _flag(cw, name, type=kind)
    cw.set_defaults(handler=_cmd_create_work, command="create-work")


def _add_job_flags(parser) -> None:
    _flag(parser, "wu_name")
    _flag(parser, "command_line")
    _flag(parser, "priority", type=int, default=0)
    _flag(parser, "opaque", type=float, default=0.0)
    _flag(parser, "additional_xml")
    parser.add_argument("files", nargs="*", help="input files: paths, or names already staged")


def _job_line_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="create-work --stdin line", add_help=False, exit_on_error=False)
    _add_job_flags(parser)
    for name, kind in _PARAM_FLAGS.items():
        _flag(parser, name, type=kind)
    return parser


def _request(args, defaults: dict):
    from boinc_ext.boinc.work import WorkunitRequest
    if not args.wu_name:
        raise CliError("--wu-name is required")
    params = {name: getattr(args, name) for name in _PARAM_FLAGS if getattr(args, name, None) is not None}
    inputs = [Path(f) if ("/" in f or Path(f).is_file()) else f for f in args.files]
    return WorkunitRequest(name=args.wu_name, inputs=inputs, command_line=args.command_line,
                           params={**defaults, **params}, priority=args.priority, opaque=args.opaque,
                           additional_xml=args.additional_xml)


def _cmd_create_work(args) -> int:
    from boinc_ext.boinc.config import ProjectConfig, find_project_dir
    from boinc_ext.boinc.db import Database
    from boinc_ext.boinc.work import WorkCreator
    if not args.appname:
        raise CliError("--appname (or --app) is required")
    config = ProjectConfig.load(find_project_dir(args.project))
    defaults = {name: getattr(args, name) for name in _PARAM_FLAGS if getattr(args, name) is not None}
    with Database.for_project(config) as db:
        creator = WorkCreator(config, db, args.appname, args.wu_template, args.result_template,
                              link_inputs=args.link_inputs, defaults=defaults)
        if args.stdin:
            line_parser = _job_line_parser()
            requests = []
            for number, line in enumerate(sys.stdin, 1):
                if not line.strip():
                    continue
                try:
                    line_args = line_parser.parse_args(shlex.split(line))
                except (argparse.ArgumentError, ValueError) as exc:
                    raise CliError(f"stdin line {number}: {exc}") from None
                requests.append(_request(line_args, {}))
            ids = creator.create_many(requests)
            print(f"created {len(ids)} workunits")
        else:
            wu_id = creator.create(_request(args, {}))
            print(f"created workunit {args.wu_name} (id {wu_id})")
    return 0
