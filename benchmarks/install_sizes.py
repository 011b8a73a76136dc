"""What an install of nst-suite takes on disk: the base dependencies, and what each extra adds on top of them, from
the distributions installed in this environment (their RECORD files: sizes as installed, bytecode included).

    python benchmarks/install_sizes.py [--out FILE]

Each extra's figure is the packages it pulls in (transitively) that the base install does not have already; the
torch line splits off the CUDA libraries (nvidia-*, cuda-*, triton), which PyTorch's CPU wheels leave out.
"""
from __future__ import annotations

import argparse
import re
from datetime import datetime
from importlib import metadata
from pathlib import Path

from common import ROOT, write_report

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

MB = 1e6
CUDA = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


def key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def applying(texts: list[str], extra: str = "") -> list[str]:
    """The distribution names among requirement TEXTS that apply to this interpreter (with EXTRA: those of the extra)."""
    from packaging.requirements import Requirement

    out = []
    for text in texts:
        req = Requirement(text)
        wanted = req.marker is None or req.marker.evaluate({"extra": extra})
        if wanted and (extra == "") == ("extra" not in str(req.marker or "")):
            out.append(key(req.name))
    return out


def own_extras(texts: list[str], extras: dict[str, list[str]]) -> list[str]:
    """TEXTS with a reference to the project's own extras (nst-suite[a,b]) replaced by those extras' requirements."""
    from packaging.requirements import Requirement

    out = []
    for text in texts:
        req = Requirement(text)
        out += own_extras([t for e in sorted(req.extras) for t in extras[e]], extras) if key(req.name) == "nst-suite" else [text]
    return out


def closure(names: list[str], installed: dict[str, metadata.Distribution]) -> set[str]:
    """NAMES and everything they require, as installed (names not installed are left out)."""
    seen: set[str] = set()
    todo = [n for n in names if n in installed]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [r for r in applying(installed[name].requires or []) if r in installed and r not in seen]
    return seen


def size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    installed = {key(d.metadata["Name"]): d for d in metadata.distributions()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = closure(applying(project["dependencies"]), installed)
    sizes = {name: size(installed[name]) for name in installed}
    cuda = {n for n in base if CUDA.match(n)}
    lines = [f"# Install sizes, {datetime.now().astimezone():%Y-%m-%d}", "",
             "Measured in an environment made with `pip install -c constraints.txt -e \".[test]\"` (Linux x86_64, "
             "Python 3.11, torch " + installed["torch"].version + " from PyPI, CUDA build): sizes as installed.", "",
             "| what | packages | MB |", "|---|---|---|",
             f"| base (`pip install nst-suite`) | {len(base)} | {sum(sizes[n] for n in base) / MB:.0f} |",
             f"| of it: torch itself | 1 | {sizes['torch'] / MB:.0f} |",
             f"| of it: CUDA libraries ({', '.join(sorted(cuda)[:3])}, …), left out by the CPU wheels | {len(cuda)} | "
             f"{sum(sizes[n] for n in cuda) / MB:.0f} |",
             f"| of it: everything else | {len(base - cuda) - 1} | {sum(sizes[n] for n in base - cuda - {'torch'}) / MB:.0f} |"]
    for extra, texts in project["optional-dependencies"].items():
        added = closure(applying(own_extras(texts, project["optional-dependencies"])), installed) - base
        shown = ", ".join(sorted(added)) if len(added) <= 6 else ", ".join(sorted(added)[:6]) + ", …"
        mb = sum(sizes[n] for n in added) / MB
        lines.append(f"| extra `{extra}` adds | {len(added)}: {shown} | {mb:.1f} |" if mb < 10 else
                     f"| extra `{extra}` adds | {len(added)}: {shown} | {mb:.0f} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
