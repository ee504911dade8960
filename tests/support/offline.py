"""A machine cut off from everything a plan may need, for tests of what the CLI says then.

``offline_env(root)`` is the environment of a ``substratus`` subprocess with no Google Cloud
credentials at all (``GOOGLE_APPLICATION_CREDENTIALS`` names a missing file, an empty gcloud
configuration, no GCE metadata server, no GCS emulator) and a kubeconfig whose only cluster listens
on a closed local port. ``closed_port()`` is such a port (bound, then released: nothing listens).
``git_mirror(root, url)`` makes a local repository stand in for the git ``url`` (git's
``insteadOf``, as the environment variables ``git_env`` returns), so a plan resolves that source
without the network.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: unreachable
  cluster: {{server: "https://127.0.0.1:{port}"}}
contexts:
- name: unreachable
  context: {{cluster: unreachable, user: nobody}}
current-context: unreachable
users:
- name: nobody
  user: {{token: not-a-token}}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_env(root: Path) -> dict[str, str]:
    gcloud = root / "gcloud-config"
    gcloud.mkdir(parents=True, exist_ok=True)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(port=closed_port()))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORAGE_EMULATOR", "GCE_METADATA", "SUBSTRATUS_", "KUBERNETES_"))
    }
    env.update(
        {
            "NO_COLOR": "1",
            "GOOGLE_APPLICATION_CREDENTIALS": str(root / "no-such-key.json"),
            "CLOUDSDK_CONFIG": str(gcloud),
            "NO_GCE_CHECK": "True",  # google-auth: do not look for a metadata server
            "GCE_METADATA_HOST": f"127.0.0.1:{closed_port()}",
            "KUBECONFIG": str(kubeconfig),
        }
    )
    return env


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def git_mirror(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A local repository (branch ``main``) holding ``files``, and its commit."""
    repo = root / "mirror"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=repo)


def git_env(repo: Path, url: str) -> dict[str, str]:
    """Git's configuration by environment: ``url`` is read from ``repo``."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{repo}.insteadOf",
        "GIT_CONFIG_VALUE_0": url,
    }
