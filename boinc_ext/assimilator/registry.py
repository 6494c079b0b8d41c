"""Which handler assimilates which app's workunits: each app's own (boinc_ext/apps/)."""
from __future__ import annotations

from boinc_ext.apps.registry import APPS
from boinc_ext.assimilator.context import Handler

HANDLERS: dict[str, Handler] = {name: app.assimilate for name, app in APPS.items()}
