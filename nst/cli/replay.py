"""`nst run --config-from IMAGE`: the run recorded in an image nst wrote, under the flags given now."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nst.errors import UsageError


def repeat(source: Path, inputs: list[Path], call: dict[str, Any]) -> list[Path]:
    """Fill CALL from the run record in SOURCE (explicit flags, --set and --config stay on top); the recorded
    inputs unless INPUTS are given."""
    from nst.runtime.run_record import read_run_record
    from nst.settings.configfile import read_config

    record = read_run_record(source)
    recorded = {k: v for k, v in record["settings"].items() if k not in ("plan",)}
    config = call.pop("config")
    if config is not None:
        recorded.update(read_config(config)[0])
    for key, value in recorded.items():
        call.setdefault(key, value)
    for name, values in (record.get("options") or {}).items():
        call["options"].setdefault(name, {}).update({k: v for k, v in values.items() if k not in call["options"][name]})
    call["plugins"] = list(dict.fromkeys([*record.get("plugins", []), *call["plugins"]]))
    if config is not None:
        call["config"] = config
    if inputs:
        return inputs
    recorded_inputs = [record.get("content"), *record.get("styles", [])]
    if not all(isinstance(p, str) for p in recorded_inputs):
        raise UsageError(f"{source}: its run did not read its inputs from files; give CONTENT and STYLE images")
    return [Path(p) for p in recorded_inputs]
