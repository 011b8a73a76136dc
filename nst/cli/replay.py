"""`nst run --config-from IMAGE`: the settings of the run recorded in an image, under the flags given now.

The record is data (nst.runtime.run_record): its settings are checked as flags are, the files it names (inputs,
weights, model, masks) are used only when the user gives them or confirms them with --recorded-files (each is
printed), and what would write files (side-output folders, snapshots) is never taken from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nst.errors import UsageError, note_line

SHOWN = 8  # settings listed in the note of what is replayed


def repeat(source: Path, inputs: list[Path], call: dict[str, Any], confirmed: bool) -> tuple[list[Path], set[str]]:
    """Fill CALL from the run record in SOURCE (explicit flags, --set and --config stay on top); returns the inputs
    (INPUTS, or the recorded ones when CONFIRMED: --recorded-files) and the settings taken from the record."""
    from nst.host import default_host
    from nst.runtime.run_record import replay
    from nst.settings import Settings
    from nst.settings.configfile import read_config
    from nst.settings.declare import declared

    found = replay(source, default_host())
    given = {key for key in call if key in declared(Settings)}  # the settings flags given now
    if call["config"] is not None:  # and the config file's: both win over the record
        values, plugins, sets = read_config(call["config"])
        given |= {key.replace("-", "_") for key in values}
        call["plugins"] = list(dict.fromkeys([*plugins, *call["plugins"]]))
        for plugin, options in sets.items():
            call["options"].setdefault(plugin, {}).update({k: v for k, v in options.items()
                                                           if k not in call["options"][plugin]})
    replayed = {k: v for k, v in found.settings.items() if k not in given}
    call.update(replayed)
    for plugin, values in found.options.items():
        mine = call["options"].setdefault(plugin, {})
        mine.update({k: v for k, v in values.items() if k not in mine})
    call["plugins"] = list(dict.fromkeys([*found.plugins, *call["plugins"]]))
    record = found.record
    files = {name: value for name, value in found.held.items() if not _given(name, found.where[name], given, call)}
    recorded_inputs = [record.content, *record.styles]
    if not inputs:
        if not all(isinstance(p, str) for p in recorded_inputs):
            raise UsageError(f"{source}: its run did not read its inputs from files; give CONTENT and STYLE images")
        files = {"CONTENT": record.content, **{f"STYLE {i + 1}": s for i, s in enumerate(record.styles)}, **files}
    if files and not confirmed:
        listed = "; ".join(f"{name} {value}" for name, value in files.items())
        raise UsageError(f"{source} names files its run read ({listed}): give them yourself, or add --recorded-files "
                         "to use these")
    for name, value in files.items():
        note_line(f"from {source}: {name} {value}")
        where = found.where.get(name)
        if where is not None and where[0] == "settings":
            call[where[1]] = value
        elif where is not None:
            call["options"].setdefault(where[0], {})[where[1]] = value
    if found.dropped:
        note_line(f"{source}: not replayed, as they write files: "
                  f"{', '.join(f'{name} {value}' for name, value in found.dropped.items())}")
    _announce(source, replayed)
    return (inputs if inputs else [Path(p) for p in recorded_inputs]), set(replayed)


def _given(name: str, where: tuple[str, str], given: set[str], call: dict[str, Any]) -> bool:
    """Whether the user gave the value the record holds back as NAME (a flag, or a plugin option)."""
    if where[0] == "settings":
        return where[1] in given
    return where[1] in call["options"].get(where[0], {})


def _announce(source: Path, replayed: dict[str, Any]) -> None:
    """One note of the recorded settings this run takes that differ from the defaults (a record asking for a
    million steps is seen before they start)."""
    from dataclasses import asdict

    from nst.settings import make_settings
    from nst.settings.values import flag

    defaults = asdict(make_settings({"style_loss": replayed.get("style_loss", "gram")}))
    changed = [f"{flag(k)} {v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in replayed.items()
               if v != defaults[k]]
    if changed:
        more = f" and {len(changed) - SHOWN} more (nst info {source})" if len(changed) > SHOWN else ""
        note_line(f"replaying {source}: {', '.join(changed[:SHOWN])}{more}")
