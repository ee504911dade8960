"""What the GCS state backend tells a user who can fix the problem (``DiagnosticError``s).

No I/O and no Google SDK here (``client`` maps SDK exceptions to these): each function returns
one diagnostic saying what failed, on which bucket or object, and the command that fixes it.

- ``missing_bucket``: a 404 on the bucket itself (listing, uploading).
- ``forbidden``: a 403; names the IAM permission the operation needs (``PERMISSIONS``) and the
  role that grants all of them (``roles/storage.objectAdmin``).
- ``no_credentials``: Application Default Credentials not found; ``credentials_rejected``: found
  but refused (401, a failed token refresh).
- ``gave_up``: transient failures went on past the retry deadline; ``refused``: any other error
  answer from GCS.
"""

from __future__ import annotations

from substratus.engine.diagnostic import DiagnosticError, fail

ROLE = "roles/storage.objectAdmin"
# The IAM permission each operation of the backend needs.
PERMISSIONS = {
    "read": "storage.objects.get",
    "create": "storage.objects.create",
    "overwrite": "storage.objects.create and storage.objects.delete",
    "delete": "storage.objects.delete",
    "update": "storage.objects.update",
    "list": "storage.objects.list",
}
NO_CREDENTIALS = (
    "No Google Cloud credentials: run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS"
)


def missing_bucket(bucket: str) -> DiagnosticError:
    return fail(
        f"the GCS bucket gs://{bucket} of the state backend does not exist",
        f"Create it (`gcloud storage buckets create gs://{bucket} --location=LOCATION "
        "--uniform-bucket-level-access`; turning on Object Versioning with `gcloud storage "
        f"buckets update gs://{bucket} --versioning` keeps old states recoverable), or fix the "
        "bucket name in --state, `spec.state` of the Project or SUBSTRATUS_STATE.",
    )


def forbidden(bucket: str, operation: str, target: str, message: str = "") -> DiagnosticError:
    permission = PERMISSIONS.get(operation, "storage.objects.*")
    said = f" GCS said: {message}" if message else ""
    return fail(
        f"permission denied: cannot {operation} {target} (needs {permission})",
        f"The account substratus runs as lacks {permission} on gs://{bucket}.{said} Grant it "
        f"the role {ROLE}, which has every permission the state backend needs "
        "(storage.objects.create, get, update, delete and list): `gcloud storage buckets "
        f"add-iam-policy-binding gs://{bucket} --member=MEMBER --role={ROLE}` (MEMBER is e.g. "
        "user:you@example.com or serviceAccount:ci@PROJECT.iam.gserviceaccount.com).",
    )


def no_credentials(reason: str = "") -> DiagnosticError:
    return fail(
        NO_CREDENTIALS,
        "The GCS state backend uses Application Default Credentials."
        + (f" ({reason})" if reason else "")
        + " On a workstation run `gcloud auth application-default login`; in CI set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file or use workload identity.",
    )


def credentials_rejected(bucket: str, reason: str) -> DiagnosticError:
    return fail(
        f"Google Cloud rejected the credentials used for gs://{bucket}",
        f"{reason}. Log in again (`gcloud auth application-default login`) or check the "
        "service account in GOOGLE_APPLICATION_CREDENTIALS.",
    )


def gave_up(operation: str, target: str, seconds: float, last: str) -> DiagnosticError:
    return fail(
        f"could not {operation} {target}: GCS kept failing for {seconds:g}s",
        f"The last error was: {last}. Transient errors (429, 5xx, timeouts, dropped "
        "connections) are retried with backoff; nothing was left half-done. Check the network "
        "and https://status.cloud.google.com, then run the command again (SUBSTRATUS_GCS_DEADLINE "
        "sets how long to keep retrying).",
    )


def refused(operation: str, target: str, message: str) -> DiagnosticError:
    return fail(
        f"GCS refused to {operation} {target}",
        f"{message}. Nothing else was changed; fix the cause and run the command again.",
    )
