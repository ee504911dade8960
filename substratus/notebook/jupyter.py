"""What a notebook of a plain directory runs on the local runtime when the directory has no
``notebook.sh``: the Jupyter installed beside substratus (its Python environment) or on ``PATH``.

``jupyter_command()`` is the command (``sh -c`` so that the workload contract's ``PORT`` and
``NOTEBOOK_TOKEN`` reach Jupyter's flags): JupyterLab if installed, else Jupyter Notebook, else the
bare Jupyter Server (its API and no user interface), bound to 127.0.0.1 on ``$PORT`` only (no
retry on another port: the recorded URL must be the one that answers), with the token
``$NOTEBOOK_TOKEN``, no browser of its own, and ``--allow-root`` when this process is root
(Jupyter refuses to start as root without it). It returns None when no Jupyter is installed;
``INSTALL`` says how to install one. Pure look-ups on the file system, no process is started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

# the front ends first: a bare server has no page to open
EXECUTABLES = ("jupyter-lab", "jupyter-notebook", "jupyter-server")
INSTALL = (
    "install Jupyter where substratus runs (`pip install jupyterlab`), or add a notebook.sh "
    "that starts Jupyter on $PORT with the token $NOTEBOOK_TOKEN"
)


def find_jupyter() -> Path | None:
    """The first of ``EXECUTABLES`` beside this Python (the environment substratus is installed
    in, even when it is not on ``PATH``), else on ``PATH``; None when there is none."""
    beside = str(Path(sys.executable).parent)
    for where in (beside, os.environ.get("PATH", "")):
        for name in EXECUTABLES:
            found = shutil.which(name, path=where)
            if found:
                return Path(found)
    return None


def jupyter_command() -> list[str] | None:
    """The command of the notebook (see the module docstring); None without Jupyter."""
    exe = find_jupyter()
    if exe is None:
        return None
    flags = [
        "--no-browser",
        "--ip=127.0.0.1",
        '--port="$PORT"',
        "--ServerApp.port_retries=0",
        '--IdentityProvider.token="$NOTEBOOK_TOKEN"',
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--allow-root")
    return ["sh", "-c", " ".join(["exec", shlex.quote(str(exe)), *flags])]
