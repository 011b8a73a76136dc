"""What reaches users: NSTError / UsageError as a single `error: ...` line, and `note: ...` lines, with any
control character escaped (text read from files, such as a path recorded in an image, reaches the terminal
only as printable text)."""
import sys

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder what follows


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


def printable(text: object) -> str:
    """TEXT with every control character (C0, DEL, C1, bidirectional overrides, undecodable bytes of a file
    name) written as an escape such as \\x1b, so a terminal shows it and never obeys it."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif ch in BIDI or 0xD800 <= code < 0xE000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def note_line(message: str) -> None:
    """The one way nst tells the user something on the side: `note: MESSAGE` on stderr."""
    print(f"note: {printable(message)}", file=sys.stderr, flush=True)
