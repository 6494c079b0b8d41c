"""`boinc-ext start|status|stop` as a project admin runs them."""
import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boinc_ext.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_start_status_stop(project):
    directory = str(project.project_dir)
    started = _run("start", directory)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[:2] == ["ext_file_deleter", "started"]
    try:
        status = _run("status", directory)
        assert status.stdout.split()[:2] == ["ext_file_deleter", "running"]
        again = _run("start", directory)
        assert "already running" in again.stdout
    finally:
        stopped = _run("stop", directory)
    assert stopped.returncode == 0 and stopped.stdout.split()[:2] == ["ext_file_deleter", "stopped"]
    assert (project.project_dir / "stop_daemons").exists()
    assert _run("status", directory).stdout.split()[1:3] == ["not", "running"]
    log_text = next(project.log_dir.glob("ext_file_deleter*.log")).read_text()
    assert "daemon started" in log_text and "daemon stopped (exit 0)" in log_text


def test_start_without_project_is_a_clear_error(tmp_path):
    out = _run("start", str(tmp_path))
    assert out.returncode == 1 and "config.xml: no such file" in out.stderr
