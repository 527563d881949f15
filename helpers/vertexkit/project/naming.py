"""Google Cloud naming rules shared by the config models (the copier questions mirror them)."""

from __future__ import annotations

import difflib
import re

# Regions where Vertex AI Pipelines runs.
VERTEX_PIPELINES_REGIONS: tuple[str, ...] = (
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
)

PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$")

# Suffixes the template appends to the naming prefix; the longest decides the prefix limit.
SERVICE_ACCOUNT_SUFFIXES = ("-pipelines", "-submitter", "-deployer")
SERVICE_ACCOUNT_MAX = 30
MAX_PREFIX_LENGTH = SERVICE_ACCOUNT_MAX - max(len(s) for s in SERVICE_ACCOUNT_SUFFIXES)

# Buckets are named <project id>-<prefix><suffix>: at most 30 + 1 + 20 + 10 = 61 characters,
# within the 63 that Cloud Storage allows, so a valid project id and prefix always fit.
BUCKET_SUFFIXES = ("-pipelines", "-data")
BUCKET_MAX = 63
PROJECT_ID_MAX = 30


def project_id_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid Google Cloud project id, or None."""
    if PROJECT_ID_RE.match(value):
        return None
    return (
        f"{value!r} is not a valid project id: 6 to 30 characters of lowercase letters, "
        "digits and hyphens, starting with a letter and not ending with a hyphen"
    )


def region_problem(value: str) -> str | None:
    """Return why ``value`` is not a Vertex AI Pipelines region, or None."""
    if value in VERTEX_PIPELINES_REGIONS:
        return None
    close = difflib.get_close_matches(value, VERTEX_PIPELINES_REGIONS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    valid = ", ".join(VERTEX_PIPELINES_REGIONS)
    return f"{value!r} is not a Vertex AI Pipelines region{hint} (valid: {valid})"


def prefix_problem(prefix: str) -> str | None:
    """Return why resource names built from ``prefix`` would break GCP limits, or None."""
    if not PREFIX_RE.match(prefix) or "--" in prefix:
        return (
            f"{prefix!r} is not a valid naming prefix: lowercase letters, digits and single "
            "hyphens, starting with a letter and not ending with a hyphen"
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        longest = prefix + max(SERVICE_ACCOUNT_SUFFIXES, key=len)
        return (
            f"{prefix!r} is too long: service account id {longest!r} would exceed "
            f"{SERVICE_ACCOUNT_MAX} characters; use at most {MAX_PREFIX_LENGTH} characters"
        )
    return None


# Secret names: one name for the environment variable, the config entry and the Secret
# Manager secret id.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAME_MAX = 255  # Secret Manager's limit on secret ids
RESERVED_PREFIXES = ("VERTEXKIT_", "GOOGLE_", "CLOUD_ML_", "AIP_", "KFP_", "PYTHON")
RESERVED_NAMES = frozenset(
    {"HOME", "HOSTNAME", "LANG", "PATH", "PWD", "SHELL", "TERM", "TMPDIR", "USER"}
)


def secret_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a secret (without repeating it), or None when it can."""
    if not isinstance(name, str):
        return f"a secret name is text, got {type(name).__name__} (quote it in YAML)"
    if not NAME_RE.match(name) or len(name) > NAME_MAX:
        return (
            f"a secret name is 1 to {NAME_MAX} ASCII letters, digits and underscores, not "
            "starting with a digit (both an environment variable and a Secret Manager id)"
        )
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        return (
            "that environment variable belongs to the system, Python, Google or vertexkit "
            f"(reserved: {', '.join(sorted(RESERVED_NAMES))} and names starting with "
            f"{', '.join(RESERVED_PREFIXES)}): choose another name"
        )
    return None


def check_secret_name(name: str) -> str:
    """Return ``name`` if it is a valid secret name; raise ValueError naming it and the rule."""
    if problem := secret_name_problem(name):
        raise ValueError(f"invalid secret name {name!r}: {problem}")
    return name
