"""Rendered Kubernetes objects: the original operator's contract, validated offline against the
official OpenAPI schema of Kubernetes 1.37 (kubernetes-validate, strict: unknown fields fail)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from substratus.engine.runtime import ResourceView
from substratus.runtimes.contract import host_env, passed_env
from substratus.runtimes.kubernetes import manifests, names
from substratus.runtimes.kubernetes.check import check_resources
from substratus.runtimes.kubernetes.fields import changed, owned
from substratus.runtimes.kubernetes.manifests import BuildSource, Mount, Workload

DIGEST = "ab" * 32
STORE = "gs://bucket/prefix"


def valid(obj: dict[str, Any]) -> dict[str, Any]:
    kubernetes_validate.validate(obj, desired_version="1.37", strict=True)
    return obj


def trainer(cloud: str = "gcp") -> Workload:
    base = STORE if cloud == "gcp" else "file:///bucket"
    return Workload(
        address="model.falcon-7b-k8s",
        kind="model",
        namespace="team-a",
        name="falcon-7b-k8s",
        digest=DIGEST,
        image="substratusai/model-trainer-huggingface",
        cloud=cloud,
        env={"HF_TOKEN": "${{ secrets.ai.HUGGING_FACE_HUB_TOKEN }}", "MODE": "train"},
        params={"num_train_epochs": 1, "save_steps": 5, "name": "x"},
        resources={"cpu": 2, "memory": 64, "disk": 100, "gpu": {"type": "nvidia-l4", "count": 4}},
        mounts=[
            Mount("artifacts", f"{base}/team-a/models/falcon-7b-k8s/abababababababab", False),
            Mount("data", f"{base}/team-a/datasets/k8s/0123456789abcdef", True),
            Mount("model", f"{base}/team-a/models/falcon-7b/fedcba9876543210", True),
        ],
    )


def test_trainer_job_follows_the_workload_contract() -> None:
    w = trainer()
    name = names.job_name("model", w.name, w.digest)
    job = valid(manifests.job(w, name))
    assert name == "falcon-7b-k8s-model-abababab"
    assert job["spec"]["backoffLimit"] == 0  # no spec.retries: never retried
    assert "podFailurePolicy" not in job["spec"]
    pod = job["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/content/params.json"]["subPath"] == "params.json"
    assert mounts["/content/data"]["readOnly"] is True
    assert mounts["/content/model"]["readOnly"] is True
    assert mounts["/content/artifacts"]["readOnly"] is False
    assert mounts["/content/artifacts"]["subPath"] == (
        "prefix/team-a/models/falcon-7b-k8s/abababababababab"
    )
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["data"]["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    assert vols["data"]["csi"]["volumeAttributes"]["bucketName"] == "bucket"
    # no sensitive params: params.json is the pod's annotation, through the downward API
    assert json.loads(pod["metadata"]["annotations"][names.PARAMS]) == w.params
    assert vols["params"]["downwardAPI"]["items"][0]["path"] == "params.json"
    assert manifests.mounted_secrets(job) == set()
    assert pod["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    env = {e["name"]: e for e in c["env"]}
    assert env["PARAM_NUM_TRAIN_EPOCHS"]["value"] == "1"
    assert env["PARAM_NAME"]["value"] == "x"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "ai",
        "key": "HUGGING_FACE_HUB_TOKEN",
    }
    assert env["CONTENT_DIR"]["value"] == "/content"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert c["resources"]["requests"]["memory"] == "64Gi"
    assert c["resources"]["requests"]["ephemeral-storage"] == "100Gi"
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    assert spec["serviceAccountName"] == "modeller"
    assert spec["restartPolicy"] == "Never"
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "substratus"
    assert labels["substratus.ai/address"] == "model.falcon-7b-k8s"
    assert labels["substratus.ai/digest"] == DIGEST[:16]
    assert job["metadata"]["annotations"]["substratus.ai/digest"] == DIGEST


def test_params_secret_keeps_json_types() -> None:
    secret = valid(manifests.params_secret(trainer(), "p"))
    assert secret["type"] == "Opaque" and list(secret["data"]) == ["params.json"]
    text = base64.b64decode(secret["data"]["params.json"]).decode()
    assert '"num_train_epochs": 1' in text


def test_sensitive_params_are_read_from_the_params_secret_never_written_in_the_pod() -> None:
    w = dataclasses.replace(
        trainer(),
        params={"token": "hunter2-secret", "nested": {"key": "s3cr3t"}, "epochs": 1},
        sensitive=frozenset({"token", "nested"}),
    )
    job = valid(manifests.job(w, "j"))
    secret = valid(manifests.params_secret(w, "j-params"))
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    for var in ("PARAM_TOKEN", "PARAM_NESTED"):
        assert env[var] == {
            "name": var,
            "valueFrom": {"secretKeyRef": {"name": "j-params", "key": var}},
        }
    assert env["PARAM_EPOCHS"]["value"] == "1"  # not sensitive: a plain value
    assert "hunter2-secret" not in json.dumps(job) and "s3cr3t" not in json.dumps(job)
    assert manifests.mounted_secrets(job) == {"j-params"}  # params.json: in the Secret
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["PARAM_TOKEN"] == "hunter2-secret"
    assert json.loads(data["PARAM_NESTED"]) == {"key": "s3cr3t"}
    assert json.loads(data["params.json"])["token"] == "hunter2-secret"


def test_kind_uses_host_paths_and_no_gpu_selector() -> None:
    w = trainer("kind")
    spec = valid(manifests.job(w, "j"))["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["artifacts"]["hostPath"] == {
        "path": "/bucket/team-a/models/falcon-7b-k8s/abababababababab",
        "type": "DirectoryOrCreate",
    }
    assert "nodeSelector" not in spec
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_job_without_retries_runs_once_and_pvc_store_mounts_a_claim() -> None:
    w = Workload(
        "dataset.squad",
        "dataset",
        "default",
        "squad",
        DIGEST,
        "img",
        "generic",
        resources={"cpu": 0.5, "memory": 1.5, "disk": 10},
        mounts=[Mount("artifacts", "pvc://models/p/default/datasets/squad/x", False)],
    )
    job = valid(manifests.job(w, names.job_name("dataset", "squad", DIGEST)))
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0
    assert {"name": "SUBSTRATUS_ATTEMPT", "value": "1"} in spec["containers"][0]["env"]
    assert spec["containers"][0]["resources"]["requests"]["cpu"] == "500m"
    assert spec["containers"][0]["resources"]["requests"]["memory"] == "1536Mi"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["artifacts"]["persistentVolumeClaim"]["claimName"] == "models"
    assert spec["containers"][0]["volumeMounts"][1]["subPath"] == "p/default/datasets/squad/x"


def test_retries_are_the_backoff_limit_and_a_disruption_does_not_count() -> None:
    w = dataclasses.replace(trainer(), retries=3, command=["python3", "train.py"])
    job = valid(manifests.job(w, "j"))
    assert job["spec"]["backoffLimit"] == 3
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"] == {
        "containerName": "model",
        "operator": "In",
        "values": [126, 127],
    }
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"  # what a podFailurePolicy requires
    (c,) = spec["containers"]
    assert c["command"][:2] == ["/bin/sh", "-c"] and c["command"][-2:] == ["python3", "train.py"]
    assert "SUBSTRATUS_ATTEMPT" not in {e["name"] for e in c["env"]}  # the wrapper sets it
    # without a command the image's entrypoint runs as it is (nothing to wrap)
    bare = valid(manifests.job(dataclasses.replace(w, command=None), "j"))
    assert "command" not in bare["spec"]["template"]["spec"]["containers"][0]
    assert bare["spec"]["podFailurePolicy"] == job["spec"]["podFailurePolicy"]


def test_the_wrapped_command_counts_its_attempts_in_the_artifacts(tmp_path: Path) -> None:
    """The wrapper, run by a real ``/bin/sh``: each start sees the next attempt, kept in
    ``artifacts/.substratus/attempt`` (one file per rank of an Indexed Job)."""
    (tmp_path / "artifacts").mkdir()
    w = dataclasses.replace(trainer(), retries=2, command=["printenv", "SUBSTRATUS_ATTEMPT"])
    command = manifests.job(w, "j")["spec"]["template"]["spec"]["containers"][0]["command"]
    env = {"PATH": os.environ["PATH"], "CONTENT_DIR": str(tmp_path)}

    def start(**extra: str) -> str:
        done = subprocess.run(command, env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert [start(), start(), start()] == ["1", "2", "3"]
    assert start(JOB_COMPLETION_INDEX="1") == "1"
    assert (tmp_path / "artifacts" / ".substratus" / "attempt").read_text() == "3\n"
    missing = dataclasses.replace(w, command=["no-such-command-here"])
    command = manifests.job(missing, "j")["spec"]["template"]["spec"]["containers"][0]["command"]
    failed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert failed.returncode == 127  # FailJob: a command that is not there is not retried


def test_retries_without_a_command_warn_that_the_attempt_is_not_known() -> None:
    image = {"image": "substratusai/model-trainer-huggingface", "env": {}}
    spec = {"container": image, "trainer": {"dataset": {"name": "d"}}, "retries": 2}
    (diag,) = check_resources([ResourceView("model.m", "model", spec)], STORE, "gcp", "r")
    assert diag.severity.value == "warning" and diag.path == "spec.retries"
    assert diag.summary == "SUBSTRATUS_ATTEMPT is not set in the pods of this job"
    commanded = {**spec, "container": {**image, "command": ["python3", "train.py"]}}
    no_retries = {k: v for k, v in spec.items() if k != "retries"}
    on_nodes = {**spec, "resources": {"nodes": 2}}  # each attempt's Job gives it as a value
    views = [ResourceView("model.m", "model", s) for s in (commanded, no_retries, on_nodes)]
    assert check_resources(views, STORE, "gcp", "r") == []


def test_spot_selects_spot_nodes_and_tolerates_their_taint() -> None:
    toleration = {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    }
    gcp = valid(manifests.job(dataclasses.replace(trainer(), spot=True), "j"))
    spec = gcp["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-spot": "true",
    }
    assert spec["tolerations"].count(toleration) == 1
    cpu = dataclasses.replace(trainer("generic"), resources={"cpu": 1}, spot=True)
    spec = valid(manifests.job(cpu, "j"))["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert spec["tolerations"] == [toleration]
    on_demand = dataclasses.replace(cpu, spot=False)
    spec = valid(manifests.job(on_demand, "j"))["spec"]["template"]["spec"]
    assert "nodeSelector" not in spec and "tolerations" not in spec


def test_job_names_fit_the_label_limit() -> None:
    name = names.job_name("dataset", "a" * 50, DIGEST)
    assert len(name) <= 63 and name.endswith("-data-abababab")


def test_model_server_deployment_and_service() -> None:
    w = Workload(
        "modelserver.falcon",
        "modelserver",
        "default",
        "falcon",
        DIGEST,
        "substratusai/model-server-basaran",
        "gcp",
        resources={"gpu": {"type": "nvidia-l4", "count": 1}},
        mounts=[Mount("model", "gs://b/default/models/m/0123456789abcdef", True)],
        owned_env={"PORT": "8080", "MODEL_LOAD_IN_4BIT": "true"},
    )
    dep = valid(manifests.deployment(w, "falcon-server", 2))
    svc = valid(manifests.service(w, "falcon-server", 8080, "http-serve"))
    assert dep["spec"]["replicas"] == 2
    tmpl = dep["spec"]["template"]
    c = tmpl["spec"]["containers"][0]
    assert c["readinessProbe"] == {"httpGet": {"path": "/", "port": "http-serve"}}
    assert c["ports"] == [{"name": "http-serve", "containerPort": 8080}]
    assert {"name": "MODEL_LOAD_IN_4BIT", "value": "true"} in c["env"]
    assert c["volumeMounts"][1]["mountPath"] == "/content/model"
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= tmpl["metadata"]["labels"].items()
    assert "substratus.ai/digest" not in selector  # a new version rolls out in place
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http-serve"}]


def test_notebook_pod_takes_its_token_from_a_secret() -> None:
    w = Workload(
        "notebook.dev",
        "notebook",
        "default",
        "dev",
        DIGEST,
        "img",
        "kind",
        mounts=[Mount("artifacts", "file:///bucket/default/notebooks/dev", False)],
    )
    pod = valid(manifests.notebook_pod(w, "dev-notebook", "dev-notebook-token"))
    c = pod["spec"]["containers"][0]
    token = next(e for e in c["env"] if e["name"] == "NOTEBOOK_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "dev-notebook-token", "key": "token"}
    assert c["ports"] == [{"name": "notebook", "containerPort": 8888}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/api"
    assert valid(manifests.token_secret(w, "dev-notebook-token", "t"))["type"] == "Opaque"


def test_kaniko_builds_a_git_commit_or_an_uploaded_context() -> None:
    w = Workload(
        "build.images-loader",
        "build",
        "default",
        "images-loader",
        DIGEST,
        "reg.example/images-loader:0123abc",
        "gcp",
        resources={"cpu": 2},
    )
    git = valid(
        manifests.kaniko_job(
            w, "b", BuildSource(git_url="https://g/x", commit="0123abc", path="loader/")
        )
    )
    spec = git["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    assert args[:2] == ["--context=dir:///workspace", "--context-sub-path=loader"]
    assert "--destination=reg.example/images-loader:0123abc" in args
    clone = spec["initContainers"][0]
    assert {"name": "GIT_COMMIT", "value": "0123abc"} in clone["env"]
    assert spec["serviceAccountName"] == "container-builder"
    assert git["metadata"]["annotations"]["image"] == "reg.example/images-loader:0123abc"
    tar = valid(manifests.kaniko_job(w, "b", BuildSource(tarball="gs://b/k/context.tar.gz")))
    assert tar["spec"]["template"]["spec"]["containers"][0]["args"][0] == (
        "--context=gs://b/k/context.tar.gz"
    )
    kind = dataclasses.replace(w, cloud="kind", resources=None)
    host = valid(manifests.kaniko_job(kind, "b", BuildSource(tarball="file:///bucket/k/c.tgz")))
    builder = host["spec"]["template"]["spec"]["containers"][0]
    assert builder["args"][0] == "--context=tar:///context/c.tgz"
    assert "resources" not in builder


def test_owned_fields_follow_managed_fields() -> None:
    obj: dict[str, Any] = {
        "metadata": {
            "managedFields": [
                {
                    "manager": "substratus",
                    "operation": "Apply",
                    "fieldsV1": {
                        "f:spec": {
                            "f:replicas": {},
                            "f:template": {
                                "f:spec": {
                                    "f:containers": {'k:{"name":"serve"}': {".": {}, "f:image": {}}}
                                }
                            },
                        }
                    },
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "fieldsV1": {"f:status": {}},
                },
            ]
        },
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "serve", "image": "a", "terminationMessagePath": "/dev"}
                    ]
                }
            },
        },
    }
    before = owned(obj)
    assert set(before) == {"spec.replicas", "spec.template.spec.containers[name=serve].image"}
    obj["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/x"
    assert changed(before, owned(obj)) == []  # not a field we manage
    obj["spec"]["replicas"] = 3
    assert changed(before, owned(obj)) == ["spec.replicas"]
    del obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"]
    obj["spec"]["replicas"] = 1
    assert changed(before, owned(obj)) == ["spec.replicas"]  # ownership moved away


@pytest.mark.parametrize(
    ("url", "cloud", "registry", "expected"),
    [
        ("gs://b/p", "gcp", "r", []),
        ("gs://b/p", "kind", "r", ["needs GKE's GCS FUSE driver"]),
        ("", "gcp", "r", ["cannot be mounted by pods"]),
        ("file:///bucket", "kind", "", ["needs a registry"]),
        ("pvc://claim", "generic", "r", ["cannot be uploaded to a pvc://"]),
    ],
)
def test_check(url: str, cloud: str, registry: str, expected: list[str]) -> None:
    views = [
        ResourceView("dataset.d", "dataset", {"container": {"image": "x"}}),
        ResourceView("build.b", "build", {"source": "local", "path": "/x", "contentHash": "h"}),
    ]
    found = [d.summary for d in check_resources(views, url, cloud, registry)]
    assert len(found) == len(expected)
    for summary, want in zip(found, expected, strict=True):
        assert want in summary


def test_check_refuses_secret_references_kubernetes_cannot_name() -> None:
    view = ResourceView(
        "dataset.d",
        "dataset",
        {
            "container": {
                "image": "x",
                "env": {"A": "${{ secrets.Bad_Name.key }}", "B": "${{ secrets.ai.HF_TOKEN }}"},
            }
        },
    )
    (diag,) = check_resources([view], "gs://b/p", "gcp", "r")
    assert "Secret 'Bad_Name'" in diag.summary and diag.path == "spec.container.env.A"


def test_a_pod_gets_only_what_the_workload_names_of_the_operators_environment() -> None:
    """The same rule as a local process (runtimes.contract): the names ``container.passEnv``
    lists (and ``SUBSTRATUS_PASS_ENV``), with the operator's values at apply time; never the
    rest of the operator's environment. ``container.env`` wins over a passed value."""
    operator = {
        "AWS_SECRET_ACCESS_KEY": "x",
        "FOO": "bar",
        "PATH": "/operator/bin",
        "AWS_PROFILE": "dev",
        "MODE": "from-the-shell",
        "SUBSTRATUS_PASS_ENV": "EXTRA, not a name",
        "EXTRA": "1",
    }
    spec = {"container": {"passEnv": ["AWS_PROFILE", "MODE", "UNSET_ONE"]}}
    w = dataclasses.replace(trainer(), passed_env=passed_env(spec, operator))
    (c,) = valid(manifests.job(w, "j"))["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env.pop("AWS_PROFILE") == "dev"
    assert env.pop("EXTRA") == "1"
    assert env.pop("MODE") == "train"  # container.env wins
    assert set(env) == {
        "PARAM_NUM_TRAIN_EPOCHS",
        "PARAM_SAVE_STEPS",
        "PARAM_NAME",
        "HF_TOKEN",
        "CONTENT_DIR",
        "SUBSTRATUS_ATTEMPT",
    }
    assert len(c["env"]) == len({e["name"] for e in c["env"]})  # one entry per name
    assert host_env(operator) == {"PATH": "/operator/bin"}  # a local process keeps only that
