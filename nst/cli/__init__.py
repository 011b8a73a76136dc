"""The front-end shell: the `nst` command (app.py assembles the commands of run.py, batch.py, replay.py,
train.py, export.py, listings.py, studio.py and bench.py). Nothing below the CLI imports it."""
import signal
import sys


def main() -> None:
    """Console entry point (nst.cli.app.main). Starting loads PyTorch and every plugin; a Ctrl-C meanwhile is
    held until they are loaded (an interrupt inside a compiled module's start can abort the process) and then
    ends nst with the same one line and exit code 130 as a Ctrl-C during a run."""
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    try:
        from nst.cli.app import main as run
        from nst.host import default_host

        default_host()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    run()


def entry() -> None:
    """The `nst` console script and `python -m nst.cli`: main(), and after a Ctrl-C the process ends at once with
    exit code 130. (When the interrupt reached Python code that a compiled library was running, the interpreter
    would otherwise end itself by SIGINT on the way out, although nst had handled it.)"""
    import os

    try:
        main()
    except SystemExit as exc:
        if exc.code == 130:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
