"""Scheduler and transitioner throughput of the embedded server, with 10,000 unsent results.

Sets up a private MariaDB and a project, creates 10,000 single-replica workunits, times the
transitioner creating their results (stock: about 1,900 WU/s), then starts the embedded
server (`python -m boinc_ext.server`, waitress, its own process) and drives it over HTTP
with requests shaped like boinc-client 7.20.5's, one new connection per request as the
client makes them:
  * no-work RPCs (reports nothing, asks for nothing), one and two at a time;
  * RPCs that each get one job, one and two at a time.
Baseline in the same run: GETs of the master page through the same HTTP stack (no
database), the ceiling any handler on this server can reach. Stock BOINC's CGI scheduler,
built from source and measured on this machine kind, is printed as the reference: 212/s
no-work (362/s two at a time), 73/s sending one job (133/s two at a time).

Usage: python bench/scheduler.py [--n 10000] [--seconds 10]
"""
from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from boinc_ext.boinc.config import ProjectConfig  # noqa: E402
from boinc_ext.boinc.db import Database  # noqa: E402
from boinc_ext.local.mariadb import MariaDBServer  # noqa: E402
from boinc_ext.project.create import ProjectSpec, create_project  # noqa: E402
from boinc_ext.server.scheduler.handler import scheduler_url  # noqa: E402
from boinc_ext.local.volunteer import free_port  # noqa: E402
from bench.transitioner import STOCK_WU_PER_S, create_due_workunits, run_transitioner  # noqa: E402
from sched_client import make_user, scheduler_request  # noqa: E402

STOCK = {"no work": (212.0, 362.0), "one job": (73.0, 133.0), "transitioner": STOCK_WU_PER_S}


def set_up(base: Path, n: int) -> tuple[MariaDBServer, ProjectConfig, float]:
    server = MariaDBServer(base / "db")
    server.init()
    server.start()
    port = free_port()
    config = create_project(ProjectSpec(project_dir=base / "proj", master_url=f"http://127.0.0.1:{port}/bench/",
                                        name="bench", db=server.settings("bench")))
    with open(config.project_dir / "config.xml") as f:
        text = f.read()
    text = text.replace("<max_wus_to_send>50</max_wus_to_send>",
                        "<max_wus_to_send>50</max_wus_to_send>\n    <max_wus_in_progress>100000</max_wus_in_progress>")
    (config.project_dir / "config.xml").write_text(text)
    config = ProjectConfig.load(config.project_dir)
    create_due_workunits(config, n, base)
    transitioner_rate = run_transitioner(config, n).rate
    return server, config, transitioner_rate


def start_server(config: ProjectConfig) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "boinc_ext.server", "--project_dir", str(config.project_dir),
                                "-d", "1"], cwd=ROOT)
    host, port = "127.0.0.1", urlsplit(config.master_url).port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start listening within 30 s")


def request(port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return data
    finally:
        conn.close()


def drive(label: str, port: int, make_call, clients: int, seconds: float) -> float:
    """Each client thread calls make_call(thread_index, i) back to back for `seconds`."""
    counts = [0] * clients
    stop_at = time.monotonic() + seconds

    def loop(index: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            make_call(index, i)
            i += 1
        counts[index] = i

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(counts) / (time.perf_counter() - started)
    print(f"  {label:40} {clients} at a time: {rate:8.1f} requests/s", flush=True)
    return rate


def measure_scheduler(config: ProjectConfig, seconds: float,
                      clients_list: tuple[int, ...] = (1, 2)) -> dict[tuple[str, int], tuple[float, float]]:
    """Starts the embedded server on `config` (which holds the unsent results), drives it and
    stops it; returns {(label, clients): (requests/s, master-page baseline requests/s)}."""
    process = start_server(config)
    try:
        port = urlsplit(config.master_url).port
        path = urlsplit(scheduler_url(config)).path
        master = urlsplit(config.master_url).path
        with Database.for_project(config) as db:
            auths = [make_user(db, f"b{i}@example.org") for i in range(max(clients_list))]
        hosts = [int(request(port, "POST", path, scheduler_request(a, work_req_seconds=0)).split(b"<hostid>")[1]
                     .split(b"<")[0]) for a in auths]
        seqno = [1] * len(auths)

        def no_work(k, i):
            request(port, "POST", path, scheduler_request(auths[k], hosts[k], seqno[k] + i, with_key=True,
                                                          work_req_seconds=0))

        def one_job(k, i):
            reply = request(port, "POST", path, scheduler_request(auths[k], hosts[k], 10**6 + i, with_key=True,
                                                                  cpu_req_instances=1))
            if b"<result>" not in reply:
                raise RuntimeError("a one-job request got no job (out of unsent results?)")

        print("HTTP, one new connection per request:")
        figures = {}
        for clients in clients_list:
            base_rate = drive("baseline: master page (no database)", port,
                              lambda k, i: request(port, "GET", master), clients, seconds)
            for label, call in (("no work", no_work), ("one job", one_job)):
                rate = drive(f"scheduler RPC, {label}", port, call, clients, seconds)
                figures[(label, clients)] = (rate, base_rate)
        return figures
    finally:
        process.terminate()
        process.wait(timeout=30)


def print_scheduler_summary(figures: dict[tuple[str, int], tuple[float, float]]) -> None:
    print("\nsummary (ratio = ours / master-page baseline; stock = C++ CGI scheduler, same machine kind)")
    for (label, clients), (rate, base_rate) in figures.items():
        stock = STOCK[label][clients - 1]
        print(f"  {label:8} {clients} at a time: {rate:7.1f}/s  baseline {base_rate:7.1f}/s  "
              f"ratio {rate / base_rate:.2f}  stock {stock:.0f}/s  ours/stock {rate / stock:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        base = Path(tmp)
        print(f"setting up: private MariaDB, project, {args.n} workunits ...", flush=True)
        dbserver, config, transitioner_rate = set_up(base, args.n)
        try:
            print(f"transitioner: {transitioner_rate:,.0f} WU/s creating {args.n} results "
                  f"(stock reference about {STOCK['transitioner']:,.0f} WU/s; ratio {transitioner_rate / STOCK['transitioner']:.2f})")
            print_scheduler_summary(measure_scheduler(config, args.seconds))
        finally:
            dbserver.stop()
    return 0

if __name__ == "__main__":
    sys.exit(main())
