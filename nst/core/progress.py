"""One progress bar for every long job (runs, training, batches, downloads, text synthesis): rich, on stderr."""
from __future__ import annotations


def progress_bar(*extra, disable: bool = False, transient: bool = False, counts: bool = True):
    """A started-on-enter rich Progress on stderr: description, bar, done/total (when COUNTS), elapsed,
    remaining, then the EXTRA columns (rich column objects, or format strings such as
    "{task.fields[losses]}")."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), *([MofNCompleteColumn()] if counts else []),
               TimeElapsedColumn(), TimeRemainingColumn()]
    columns += [TextColumn(c) if isinstance(c, str) else c for c in extra]
    return Progress(*columns, console=Console(stderr=True), disable=disable, transient=transient)
