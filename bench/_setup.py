"""What the benchmarks stand on: a fresh project on its own private MariaDB, in a scratch
directory that is removed afterwards. Scripts put the repository on sys.path first."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.local.mariadb import MariaDBServer
from boinc_ext.project.create import ProjectSpec, create_project
from boinc_ext.local.volunteer import free_port


@contextmanager
def bench_project(prefix: str, templates: dict[str, str]) -> Iterator[tuple[ProjectConfig, Path]]:
    """(the project, the scratch directory): project `bench` with `templates` ({file name:
    text}) in its templates/, on a MariaDB server started for it and stopped on exit."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    server = MariaDBServer(work / "db")
    server.init()
    server.start()
    try:
        config = create_project(ProjectSpec(work / "project", f"http://127.0.0.1:{free_port()}/bench/", "bench",
                                            server.settings("bench")))
        for name, text in templates.items():
            (config.project_dir / "templates" / name).write_text(text)
        yield config, work
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
