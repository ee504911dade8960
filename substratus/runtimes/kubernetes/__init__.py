"""The Kubernetes runtime (DESIGN §8): resources as Jobs, Deployments, Services and Pods.

Only ``cluster`` imports the ``kubernetes`` client (lazily); everything else builds plain dicts.
"""

from substratus.runtimes.kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]
