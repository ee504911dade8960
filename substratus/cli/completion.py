"""The ``completion`` command: a shell completion script for bash, zsh or fish, as
``kubectl completion SHELL`` prints one (``source <(substratus completion bash)``).

The script calls the CLI back with ``_SUBSTRATUS_COMPLETE=complete_SHELL`` (typer's and click's
completion protocol; for bash ``COMP_WORDS`` and ``COMP_CWORD`` say what is typed): commands and
flags complete from the app itself, resource addresses from the configuration and the state
(``substratus.cli.addresses.complete``). ``main`` calls ``init`` before running the app when
the variable is set.
"""

from __future__ import annotations

from typing import Annotated

import typer

from substratus.cli.startup import COMPLETE_VAR
from substratus.engine.diagnostic import fail

SHELLS = ("bash", "zsh", "fish")


def _shells(incomplete: str) -> list[str]:
    return [s for s in SHELLS if s.startswith(incomplete)]


def completion(
    shell: Annotated[
        str, typer.Argument(help="bash, zsh or fish.", autocompletion=_shells, metavar="SHELL")
    ],
) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    Examples: source <(substratus completion bash);
    substratus completion fish > ~/.config/fish/completions/substratus.fish
    """
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        raise fail(f"Unknown shell {shell!r}", f"Completion is for {', '.join(SHELLS)}.")
    print(get_completion_script(prog_name="substratus", complete_var=COMPLETE_VAR, shell=shell))


def init() -> None:
    """Use typer's completion classes (what the printed scripts expect) for this run."""
    from typer._completion_classes import completion_init

    completion_init()
