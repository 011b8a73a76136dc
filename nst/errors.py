"""What reaches users: NSTError / UsageError as a single `error: ...` line, and `note: ...` lines."""
import sys


class NSTError(Exception):
    """A problem the user can fix (bad input, missing weights, bad option); printed without traceback."""


class UsageError(NSTError):
    """A malformed command line or option value (CLI exit code 2)."""


class FieldError(UsageError):
    """A bad value for FIELD (a settings field name, or PLUGIN.KEY): PROBLEM says what is wrong. The layer
    that knows how the user spelled the field (`--style-blend`, `analogy.alphas`) re-spells it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")

    def spelled(self, name: str) -> "FieldError":
        """The same error with the field named as the user typed it (e.g. '--style-blend')."""
        return FieldError(name, self.problem)


def note_line(message: str) -> None:
    """The one way nst tells the user something on the side: `note: MESSAGE` on stderr."""
    print(f"note: {message}", file=sys.stderr, flush=True)
