"""Which handler assimilates which app's workunits."""
from __future__ import annotations

from .context import Handler
from .r_job import assimilate_r_job

HANDLERS: dict[str, Handler] = {
    "r_job": assimilate_r_job,
}
