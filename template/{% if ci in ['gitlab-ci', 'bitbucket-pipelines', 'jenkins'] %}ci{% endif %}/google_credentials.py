"""Write the Google credential configuration of a CI job: Workload Identity Federation, no key.

The CI system gives the job an OpenID Connect ID token (GitLab `id_tokens`, Bitbucket
`oidc: true`, Jenkins' OpenID Connect Provider plugin). This script writes the token to a file
next to ``--out`` and ``--out`` itself: an ``external_account`` credential configuration, the
file ``gcloud iam workload-identity-pools create-cred-config`` writes. With
GOOGLE_APPLICATION_CREDENTIALS naming it, google-auth (so every invoke task) exchanges the token
at Google's Security Token Service and acts as the service account.

    python ci/google_credentials.py --token-env GCP_ID_TOKEN --out build/ci/google-credentials.json

Reads GCP_WORKLOAD_IDENTITY_PROVIDER
(projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER) and
GCP_SERVICE_ACCOUNT (the CI deployer account's e-mail), or the variable --service-account-env
names (GCP_PROVISIONER_SERVICE_ACCOUNT, GCP_PLANNER_SERVICE_ACCOUNT); `invoke provision` prints
them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

PROVIDER_RE = re.compile(
    r"^projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+$"
)
SERVICE_ACCOUNT_RE = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$"
)


def credential_configuration(provider: str, service_account: str, token_file: Path) -> dict:
    """The external_account configuration that google-auth reads."""
    return {
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{provider}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": (
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
            f"{service_account}:generateAccessToken"
        ),
        "credential_source": {"file": str(token_file)},
    }


def _required(name: str, pattern: re.Pattern[str], example: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"error: {name} is not set: set it in the CI system's variables, e.g. {example}")
    if not pattern.match(value):
        sys.exit(f"error: {name}={value!r} is not of the form {example}")
    return value


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token-env", required=True, help="variable holding the ID token")
    parser.add_argument("--out", required=True, type=Path, help="configuration file to write")
    parser.add_argument(
        "--service-account-env",
        default="GCP_SERVICE_ACCOUNT",
        help="variable holding the account's e-mail (default: GCP_SERVICE_ACCOUNT)",
    )
    args = parser.parse_args(argv)
    provider = _required(
        "GCP_WORKLOAD_IDENTITY_PROVIDER",
        PROVIDER_RE,
        "projects/123456789012/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
    )
    service_account = _required(
        args.service_account_env, SERVICE_ACCOUNT_RE, "NAME@PROJECT.iam.gserviceaccount.com"
    )
    token = os.environ.get(args.token_env, "").strip()
    if not token:
        sys.exit(f"error: {args.token_env} holds no ID token: is OpenID Connect on for this job?")
    out = args.out.resolve()
    token_file = out.with_name(out.stem + "-id-token")
    _write_private(token_file, token)
    configuration = credential_configuration(provider, service_account, token_file)
    _write_private(out, json.dumps(configuration, indent=2) + "\n")
    print(f"wrote {out}: acting as {service_account} through {provider}")


if __name__ == "__main__":
    main()
