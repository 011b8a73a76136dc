"""The options tables of README.md, made from the settings' declarations (nst/settings/run.py, train.py).

    python docs/options.py           rewrite the tables between the <!-- options: NAME --> markers
    python docs/options.py --check   exit 1 (naming the table) when README.md is out of date
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def table(cls) -> str:
    """A markdown table of CLS's declared settings, grouped as --help groups them: option, default, meaning."""
    from nst.settings.declare import declared
    from nst.settings.values import flag

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows, groups = ["| option | default | meaning |", "|---|---|---|"], {}
    for opt in declared(cls).values():
        groups.setdefault(opt.group, []).append(opt)
    for opts in groups.values():
        for opt in opts:
            choices = f" One of {', '.join(f'`{c}`' for c in opt.choices)}." if opt.choices and len(opt.choices) < 8 else ""
            default = f"`{opt.default_text()}`" if opt.default_text() and opt.shown is None else opt.default_text()
            rows.append(f"| `{flag(opt.key)}` | {cell(default)} | {cell(opt.help)}{cell(choices)} |")
    return "\n".join(rows)


def tables() -> dict[str, str]:
    from nst.settings import Settings, TrainSettings

    return {"run": table(Settings), "train": table(TrainSettings)}


def rewrite(text: str) -> str:
    for name, body in tables().items():
        pattern = re.compile(rf"(<!-- options: {name} -->\n).*?(\n<!-- /options -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- options: {name} --> ... <!-- /options --> markers")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


if __name__ == "__main__":
    old = README.read_text(encoding="utf-8")
    new = rewrite(old)
    if "--check" in sys.argv[1:]:
        if new != old:
            raise SystemExit("README.md: the options tables differ from the declarations; run python docs/options.py")
    elif new != old:
        README.write_text(new, encoding="utf-8")
        print("README.md: options tables rewritten")
