"""The error every `boinc-ext` subcommand raises for a user's mistake."""


class CliError(Exception):
    """A user error: printed without a traceback, exit status 1."""
