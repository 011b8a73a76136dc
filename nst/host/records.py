"""What the host knows of each plugin: its record (status, error, what it provides) and the clash rule."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nst.contract.context import Method
from nst.core.weights import WeightSource
from nst.settings.values import Option

# nst's own commands (the CLI's, and built-in plugins' such as `video`): no other plugin may take these
RESERVED_COMMANDS = ("run", "train", "export", "plugins", "weights", "info", "video", "serve", "bench")


class Clash(Exception):
    """A registration that takes a name someone else has."""


@dataclass
class PluginRecord:
    """One plugin as `nst plugins` shows it, with what it contributes (empty unless status is "ok"). CLAIMED:
    {kind: names} it registered before it failed, so a request for one of them can name the broken plugin."""

    name: str
    package: str
    version: str
    status: str = "ok"  # "ok", "error" or "disabled"
    error: str = ""
    builtin: bool = False
    methods: dict[str, Method] = field(default_factory=dict)
    options: dict[str, Option] = field(default_factory=dict)
    weights: list[WeightSource] = field(default_factory=list)
    architectures: dict[str, Callable[[dict], torch.nn.Module]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    command_infos: list = field(default_factory=list)
    claimed: dict[str, list[str]] = field(default_factory=dict)

    def provides(self) -> list[str]:
        """'method gatys', 'command depth', '2 option(s)', ... for listings."""
        out = [f"method {m}" for m in self.methods] + [f"command {c}" for c in self.commands]
        out += [f"architecture {a}" for a in self.architectures] + [f"weights {w.name}" for w in self.weights]
        return out + ([f"{len(self.options)} option(s)"] if self.options else [])

    def would_provide(self, kind: str, name: str) -> bool:
        """Whether this (broken or disabled) plugin provides or claimed NAME of KIND, or is itself called NAME."""
        return name == self.name or name in self.claimed.get(kind, ())

    def state(self) -> str:
        """'is disabled by ...' / 'could not be loaded: ...', for messages about a plugin that is not working."""
        return f"is {self.error}" if self.status == "disabled" else f"could not be loaded: {self.error}"


def command_names(typer_app) -> list[str]:
    """The sub-command names a typer app defines (commands and groups), as click resolves them."""
    import typer

    probe = typer.Typer()
    probe.registered_commands = list(typer_app.registered_commands)
    probe.registered_groups = list(typer_app.registered_groups)
    probe.callback()(lambda: None)  # a callback makes it a group even with one command
    return list(typer.main.get_command(probe).commands)
