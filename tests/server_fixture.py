"""The embedded server's process with one more route, /slow?s=SECONDS, that logs
SLOW_STARTED and then takes that long to answer: a request in flight for stop tests.

    python tests/server_fixture.py PROJECT_DIR
"""
from __future__ import annotations

import logging
import sys
import time

from flask import request

from boinc_ext.boinc.config import ProjectConfig
from boinc_ext.daemons.base import configure_logging
from boinc_ext.server.app import create_app
from boinc_ext.server.serve import serve

SLOW_STARTED = "slow request started"


def main(project_dir: str) -> int:
    configure_logging("ext_server", 2)
    config = ProjectConfig.load(project_dir)
    app = create_app(config)

    def slow():
        logging.getLogger("boinc_ext.server").info(SLOW_STARTED)
        time.sleep(float(request.args.get("s", "1")))
        return "slow done\n"
    app.add_url_rule("/slow", "slow", slow)
    return serve(config, threads=4, app=app)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
