"""What a BOINC app of ours provides: the one shape every module under apps/ fills in."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from boinc_ext.assimilator.context import Handler
from boinc_ext.boinc.config import ProjectConfig


@dataclass(frozen=True)
class AppSpec:
    name: str                                       # the app's name in BOINC's `app` table
    install: Callable[[ProjectConfig], int | None]  # templates and signed app version (idempotent)
    validation_policy: str                          # the validator's default --policy for it
    assimilate: Handler                             # what the assimilator does with its workunits
