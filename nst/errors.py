"""The one exception type that reaches users as a single `error: ...` line."""


class NSTError(Exception):
    """A problem the user can fix (bad input, missing weights, bad option); printed without traceback."""


class UsageError(NSTError):
    """A malformed command line or option value (CLI exit code 2)."""
