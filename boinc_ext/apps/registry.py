"""Every BOINC app a project of ours runs, by name. A new app is one module plus one line here."""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from boinc_ext.apps import r_job
from boinc_ext.apps.spec import AppSpec

APPS: Mapping[str, AppSpec] = MappingProxyType({app.name: app for app in (r_job.APP,)})
