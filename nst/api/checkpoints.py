"""Training checkpoints (MODEL.ckpt): written atomically every --checkpoint-every steps and on Ctrl-C, read
back by --resume only when they were made with the same settings, plugins and number of processes."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from nst.core.files import atomic_path, check_input_file
from nst.core.johnson import build_network
from nst.errors import NSTError, UsageError
from nst.runtime.distributed import rank_and_world
from nst.settings import TrainSettings


def checkpoint_path(model: Path) -> Path:
    return model.with_name(model.name + ".ckpt")


def save_checkpoint(path: Path, settings: TrainSettings, net, opt, step: int, history, skipped, plugins) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save({"config": asdict(settings), "net_config": net.config, "net": net.state_dict(), "opt": opt.state_dict(),
                        "step": step, "history": history, "skipped": skipped, "world": rank_and_world()[1],
                        "plugins": plugins}, tmp)
    except (OSError, RuntimeError) as exc:  # a full disk: torch raises RuntimeError from its writer
        raise NSTError(f"cannot write the checkpoint {path} "
                       f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                       "the previous checkpoint, if any, is kept") from None


CHECKPOINT_KEYS = ("config", "net_config", "net", "opt", "step", "history", "skipped")


def damage(state) -> str | None:
    """What is wrong with a checkpoint's entries (a checkpoint read back is data), or None: step a whole number
    of steps done, history one row of finite numbers per step, skipped file names, world a process count."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    step, history, skipped = state["step"], state["history"], state["skipped"]
    if not whole(step) or step < 1:
        return f"step {str(step)[:20]}"
    if not isinstance(history, list) or len(history) != step or not all(
            isinstance(row, dict) and whole(row.get("step")) and all(
                isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) for k, v in row.items())
            for row in history):
        return "loss history"
    if not isinstance(skipped, list) or not all(isinstance(s, str) for s in skipped):
        return "skipped photos"
    if not whole(state.get("world", 1)) or state.get("world", 1) < 1:
        return f"world {str(state.get('world'))[:20]}"
    if not all(isinstance(state[k], dict) for k in ("config", "net_config", "net", "opt")) or \
            not isinstance(state.get("plugins", {}), dict):
        return "settings"
    return None


def load_checkpoint(path: Path, settings: TrainSettings, net, opt, device, architectures,
                     plugins: dict[str, dict[str, str]]) -> tuple[int, list, list]:
    """Restore NET and OPT from the checkpoint at PATH, rebuilt through the architecture registry."""
    if not path.exists():
        raise NSTError(f"--resume: no checkpoint {path} (checkpoints are written every --checkpoint-every steps)")
    check_input_file(path, "a checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict):
            raise TypeError("not a dict")
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
    except Exception:
        raise NSTError(f"{path}: damaged checkpoint; start over with --overwrite") from None
    if missing:
        raise NSTError(f"{path}: damaged checkpoint (no '{missing[0]}' entry); start over with --overwrite")
    problem = damage(state)
    if problem:
        raise NSTError(f"{path}: damaged checkpoint ({problem}); start over with --overwrite")
    saved = state["config"]
    differ = [k for k in ("size", "batch_size", "width", "blocks", "lr", "content_weight", "style_weight", "tv_weight", "seed",
                          "style_size", "content_layers", "style_layers", "pooling",
                          "weights") if saved.get(k) != asdict(settings)[k]]
    if not differ and state["net_config"] != net.config:
        differ = ["network (plugin options)"]
    if not differ and state.get("plugins", plugins) != plugins:
        differ = [f"plugins {', '.join(sorted(state['plugins'])) or 'none'} and their options"]
    if differ:
        raise UsageError(f"--resume: the checkpoint was made with other options ({', '.join(differ)}); use the same "
                         "ones")
    if state.get("world", 1) != rank_and_world()[1]:
        raise UsageError(f"--resume: the checkpoint was made with {state.get('world', 1)} process(es), this run has "
                         f"{rank_and_world()[1]}; use the same number so every photo is seen as before")
    try:
        build_network(state["net_config"], architectures).load_state_dict(state["net"])  # the file's own architecture
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
    except NSTError:
        raise
    except Exception as exc:
        raise NSTError(f"{path}: damaged checkpoint ({type(exc).__name__}); start over with --overwrite") from None
    if state["step"] >= settings.steps:
        raise UsageError(f"--resume: the checkpoint is at step {state['step']}, nothing left to do for --steps "
                         f"{settings.steps}")
    return state["step"], state["history"], state["skipped"]
