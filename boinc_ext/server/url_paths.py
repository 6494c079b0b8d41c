"""The URL paths the embedded server answers, taken from the project's config.xml URLs."""
from __future__ import annotations

from urllib.parse import urlsplit

from boinc_ext.boinc.config import ConfigError


def path_of(url: str, setting: str) -> str:
    """The path part of `url` (config element `setting`), for a Flask route."""
    if not url:
        raise ConfigError(f"config.xml: <{setting}> is required by the embedded server")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.path.startswith("/"):
        raise ConfigError(f"config.xml: <{setting}> {url!r} is not an http(s)://HOST/PATH URL")
    return parts.path


def web_rpc_path(master_url: str, script: str) -> str:
    """`<master_url path>script`, where clients send the account web RPCs."""
    base = path_of(master_url, "master_url")
    return base.rstrip("/") + "/" + script
