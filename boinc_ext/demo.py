"""`boinc-ext demo`: the main job.

For now (the embedded server and the wrapper come next) it sets up everything a project
needs on this machine: a private MariaDB, a project with keys, schema and apps, and a
first workunit made through create_work. Then it stops what it started and says how to
go on. Running it again reuses what is there.
"""
from __future__ import annotations

import time
from pathlib import Path

from .config import ProjectConfig
from .db import Database
from .dbserver import MariaDBServer
from .project import ProjectSpec, create_project
from .work import WorkCreator, WorkunitRequest

DEMO_URL = "http://127.0.0.1:8765/demo/"
INPUT_TEMPLATE = """<input_template>
    <file_info/>
    <workunit>
        <file_ref><open_name>script.R</open_name></file_ref>
        <rsc_fpops_est>1e9</rsc_fpops_est>
        <delay_bound>3600</delay_bound>
    </workunit>
</input_template>
"""
OUTPUT_TEMPLATE = """<output_template>
    <file_info>
        <name><OUTFILE_0/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>10000000</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <result>
        <file_ref><file_name><OUTFILE_0/></file_name><open_name>result.rds</open_name></file_ref>
    </result>
</output_template>
"""
DEMO_SCRIPT = "x <- rnorm(1000)\nresult <- c(mean = mean(x), sd = sd(x))\n"


def run_demo(base: Path) -> int:
    base = base.resolve()
    server = MariaDBServer(base / "db")
    print(f"[1/4] private MariaDB in {server.base_dir}")
    server.init()
    server.start()
    try:
        config = _project(base, server)
        print(f"[3/4] project {config.long_name} at {config.project_dir}")
        name = _create_demo_workunit(config, base)
        print(f"[4/4] workunit {name} created; its row and staged input:")
        _show_workunit(config, name)
    finally:
        server.stop()
    print("\nThe project is ready. To go on:")
    print(f"  boinc-ext db start --dir {server.base_dir}")
    print(f"  boinc-ext start {config.project_dir}      # the project's daemons")
    print(f"  boinc-ext create-work --project {config.project_dir} --app r_job \\")
    print("      --wu-template templates/demo_in --result-template templates/demo_out --wu-name NAME FILE")
    print(f"  boinc-ext stop {config.project_dir}; boinc-ext db stop --dir {server.base_dir}")
    return 0


def _project(base: Path, server: MariaDBServer) -> ProjectConfig:
    project_dir = base / "project"
    if (project_dir / "config.xml").exists():
        print("[2/4] project exists; reusing it")
        return ProjectConfig.load(project_dir)
    print("[2/4] creating the project (layout, keys, BOINC schema, ext_ tables, apps)")
    config = create_project(ProjectSpec(project_dir, DEMO_URL, "demo", server.settings("boinc_demo"),
                                        "R jobs on BOINC (demo)"))
    (project_dir / "templates" / "demo_in").write_text(INPUT_TEMPLATE)
    (project_dir / "templates" / "demo_out").write_text(OUTPUT_TEMPLATE)
    return config


def _create_demo_workunit(config: ProjectConfig, base: Path) -> str:
    script = base / "demo_script.R"
    script.write_text(DEMO_SCRIPT)
    name = f"demo_{int(time.time())}"
    with Database.for_project(config) as db:
        creator = WorkCreator(config, db, "r_job", "templates/demo_in", "templates/demo_out")
        creator.create(WorkunitRequest(name=name, inputs=[script]))
    return name


def _show_workunit(config: ProjectConfig, name: str) -> None:
    with Database.for_project(config) as db:
        row = db.query_one("select id, name, transition_time, xml_doc from workunit where name = %s", (name,))
    print(f"  id {row['id']}, transition_time {row['transition_time']}")
    for line in row["xml_doc"].decode().splitlines():
        print(f"  | {line}")
