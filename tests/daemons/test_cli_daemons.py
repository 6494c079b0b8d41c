"""`boinc-ext start|status|stop` as a project admin runs them."""
import subprocess
import sys

import pytest

from boinc_ext.project.create import ProjectSpec, create_project
from boinc_ext.local.volunteer import free_port


@pytest.fixture
def project(tmp_path, db_settings):
    """The shared fixture's project, but on a free port: ext_server really listens on the
    master URL's port here, and a fixed one collides with another test session's."""
    spec = ProjectSpec(project_dir=tmp_path / "proj", master_url=f"http://127.0.0.1:{free_port()}/test/",
                       name="test", db=db_settings)
    return create_project(spec)


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boinc_ext.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_start_status_stop(project):
    directory = str(project.project_dir)
    daemons = [d.program for d in project.daemons]
    started = _run("start", directory)
    assert started.returncode == 0, started.stderr
    assert _states(started.stdout) == {name: "started" for name in daemons}
    try:
        assert _states(_run("status", directory).stdout) == {name: "running" for name in daemons}
        assert _states(_run("start", directory).stdout) == {name: "already running" for name in daemons}
    finally:
        stopped = _run("stop", directory)
    assert stopped.returncode == 0 and _states(stopped.stdout) == {name: "stopped" for name in daemons}
    assert (project.project_dir / "stop_daemons").exists()
    assert _states(_run("status", directory).stdout) == {name: "not running" for name in daemons}
    for name in daemons:
        log_text = (project.log_dir / f"{name}.log").read_text()
        assert "daemon started" in log_text and "daemon stopped (exit 0)" in log_text


def _states(output: str) -> dict[str, str]:
    """{daemon: state} from the CLI's `name  state  pid N` lines."""
    states = {}
    for line in output.splitlines():
        name, rest = line.split(None, 1)
        states[name] = rest.split(" pid ")[0].strip()
    return states


def test_start_without_project_is_a_clear_error(tmp_path):
    out = _run("start", str(tmp_path))
    assert out.returncode == 1 and "config.xml: no such file" in out.stderr
