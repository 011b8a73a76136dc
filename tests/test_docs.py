"""Every hook is documented and tested: docs/plugins.md has a `### nst_<name>` section for each hook
spec in nst.hookspecs, and some other file under tests/ mentions it. The README's tables and pictures are
the ones docs/ makes."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from nst.contract import hookspecs

TESTS = Path(__file__).parent
GUIDE = TESTS.parent / "docs" / "plugins.md"
HOOKS = sorted(name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("nst_") and hasattr(obj, "nst_spec"))
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini"}


def test_hooks_are_found():
    assert "nst_losses" in HOOKS and len(HOOKS) >= 5


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    text = GUIDE.read_text(encoding="utf-8")
    assert re.search(rf"^### {re.escape(hook)}\s*$", text, re.M), f"docs/plugins.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_tested(hook):
    for path in TESTS.rglob("*"):
        if (path.is_file() and path.suffix in TEXT_SUFFIXES and path.name != Path(__file__).name
                and "__pycache__" not in path.parts):
            if re.search(rf"\b{re.escape(hook)}\b", path.read_text(encoding="utf-8", errors="replace")):
                return
    pytest.fail(f"no file under tests/ mentions {hook}: add a test for it")


@pytest.mark.parametrize("name, lang", [("pyproject.toml", "toml"), ("nst_example.py", "python")])
def test_worked_example_matches_fixture(name, lang):
    """The guide's worked example is the tested package, verbatim."""
    source = (TESTS.parent / "examples" / "nst-example-plugin" / name).read_text(encoding="utf-8")
    assert f"```{lang}\n{source}```" in GUIDE.read_text(encoding="utf-8"), f"docs/plugins.md: {name} differs from the fixture"


def test_readme_options_tables_are_made_from_the_declarations():
    """README.md's options tables are what docs/options.py makes from nst/settings (run it after a change)."""
    import runpy

    script = runpy.run_path(str(TESTS.parent / "docs" / "options.py"))
    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    assert script["rewrite"](text) == text, "README.md's options tables are out of date: run python docs/options.py"


def test_the_guide_names_every_built_in_plugin_and_command():
    """docs/plugins.md lists nst's own plugins in its first paragraph, and names every command they add."""
    from nst.host import PluginHost
    from nst.host.plugin_host import BUILTINS

    text = GUIDE.read_text(encoding="utf-8")
    first = text[:text.index("```")]
    assert [name for name in BUILTINS if f"`{name}`" not in first] == []
    host = PluginHost(load_entry_points=False)
    commands = [c for name in BUILTINS for c in host.records[name].commands]
    assert {"masks", "presets", "video"} <= set(commands)
    assert [c for c in commands if f"`nst {c}`" not in text] == []


def test_every_picture_the_readme_shows_is_in_the_repository():
    """README.md's pictures (<img src=…> and ![…](…)) are files of the repository, not of ../shared or the web."""
    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    paths = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', text) + re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text)
    assert len(paths) >= 20, "README.md's gallery has lost its pictures"
    missing = [p for p in paths if not (TESTS.parent / p).is_file()]
    assert missing == [], f"README.md shows pictures that are not in the repository: {missing}"


def test_readme_gallery_is_the_one_docs_gallery_makes():
    """README.md's gallery table is what docs/gallery.py writes: its commands are the ones that made the
    pictures (run python docs/gallery.py after changing a row)."""
    import runpy

    script = runpy.run_path(str(TESTS.parent / "docs" / "gallery.py"))
    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    assert script["rewrite"](text) == text, "README.md's gallery differs from docs/gallery.py's rows"
