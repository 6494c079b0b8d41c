"""The assimilator daemon (`python -m boinc_ext.assimilator`) and its per-app handlers.

`registry.HANDLERS` maps an app name to its handler; a handler gets an
`AssimilationContext` and may raise `AssimilationDeferred` to be retried later.
"""
from boinc_ext.assimilator.context import AssimilationContext, AssimilationDeferred, Handler

__all__ = ["AssimilationContext", "AssimilationDeferred", "Handler"]
