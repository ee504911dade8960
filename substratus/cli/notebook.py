"""The ``notebook`` command: a local directory (or a Notebook of the configuration, or one made
from a Model/Dataset) to a running Jupyter session in one command, with the work synced back.
Part of the CLI layer.

The notebook is an ordinary resource: ``-d DIR`` and ``--from model.NAME`` write its document to
``<config dir>/.substratus/notebooks/<name>.yaml``, which every command loads with the
configuration (``wiring.with_notebooks``), so the plan and the state see it like any other
until that file is deleted. Where there is no configuration at all, that document is the whole
configuration (on the defaults); a directory without notebook.sh runs Jupyter
(``substratus.notebook.jupyter``). The command plans just that notebook and what it
needs (``--target``; shown; a plan that would replace or destroy anything else asks first unless
``--auto-approve``), applies it with ``suspend: false``, waits until Jupyter answers, prints the
URL with its token and opens the browser. With a session that reports changes (a cluster), the
files changed in the notebook are synced into the notebook's local directory
(``substratus.notebook.sync``). ``q`` + Enter, Ctrl-C or SIGTERM ends it: the notebook is then
applied again with ``suspend: true`` (recorded in the state, so no drift) unless
``--no-suspend``; running the command again resumes it with the same artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from substratus.cli.options import (
    ArtifactsOpt,
    AutoApprove,
    Context,
    Files,
    Lock,
    LockTimeout,
    Namespace,
    NoColor,
    RunOptions,
    RuntimeOpt,
    StateUrl,
    Workspace,
    parse_duration,
)
from substratus.engine.diagnostic import fail

Name = Annotated[
    str | None, typer.Argument(metavar="NAME", help="A Notebook of the configuration.")
]
Directory = Annotated[
    Path | None,
    typer.Option(
        "-d",
        "--dir",
        metavar="DIR",
        help="A directory of code: its notebook (on a cluster it needs a Dockerfile; locally "
        "it runs its notebook.sh, else Jupyter), even with no configuration (default: none).",
    ),
]
Source = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="ADDR",
        help="model.NAME or dataset.NAME: a notebook with its image, params and inputs "
        "(default: none).",
    ),
]
Port = Annotated[
    int, typer.Option("--port", metavar="PORT", help="Local port (or the next free one).")
]
NoOpenBrowser = Annotated[bool, typer.Option("--no-open-browser", help="Print the URL only.")]
NoSuspend = Annotated[
    bool, typer.Option("--no-suspend", help="Leave the notebook running on exit.")
]
JupyterTimeout = Annotated[
    str,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="How long to wait for Jupyter, e.g. 600, 90s, 20m, 1h30m.",
    ),
]


def notebook(
    ctx: typer.Context,
    name: Name = None,
    directory: Directory = None,
    source: Source = None,
    files: Files = None,
    port: Port = 8888,
    no_open_browser: NoOpenBrowser = False,
    no_suspend: NoSuspend = False,
    timeout: JupyterTimeout = "20m",
    auto_approve: AutoApprove = False,
    workspace: Workspace = "default",
    state: StateUrl = None,
    runtime: RuntimeOpt = None,
    artifacts: ArtifactsOpt = None,
    namespace: Namespace = None,
    context: Context = None,
    lock: Lock = True,
    lock_timeout: LockTimeout = "0s",
    no_color: NoColor = False,
) -> None:
    """Start a notebook (building and applying what it needs), open Jupyter, sync the work
    back; `q` or Ctrl-C suspends it.

    Examples: substratus notebook falcon-7b-dev; substratus notebook -d ./experiments;
    substratus notebook --from model.falcon-7b-k8s
    """
    wait = parse_duration(timeout, "--timeout")
    if sum(x is not None for x in (name, directory, source)) > 1:
        raise fail("Give one notebook", "Use NAME, -d DIR or --from model.NAME, not several.")
    opts = RunOptions.from_params(ctx.params, timeout=None)  # its --timeout: waiting for Jupyter
    from substratus.cli.notebook_steps import run  # the engine: imported when the command runs

    asked = (name, directory, source)
    run(opts, asked, port, wait, open_browser=not no_open_browser, suspend=not no_suspend)
