"""Google Cloud naming rules shared by the config models (the copier questions mirror them)."""

from __future__ import annotations

import difflib
import functools
import re
from importlib import resources
from typing import Any

import yaml

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
SERVICE_ACCOUNT_SUFFIXES = (
    "-pipelines",
    "-submitter",
    "-deployer",
    "-builder",
    "-provision",
    "-planner",
)
SERVICE_ACCOUNT_MAX = 30
MAX_PREFIX_LENGTH = SERVICE_ACCOUNT_MAX - max(len(s) for s in SERVICE_ACCOUNT_SUFFIXES)

# Buckets are named <project id>-<prefix><suffix>: at most 30 + 1 + 20 + 10 = 61 characters,
# within the 63 that Cloud Storage allows, so a valid project id and prefix always fit.
# -tfstate: the Terraform state bucket of provisioning.
BUCKET_SUFFIXES = ("-pipelines", "-data", "-tfstate")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
BUCKET_MAX = 63
PROJECT_ID_MAX = 30


def project_id_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid Google Cloud project id, or None."""
    if not PROJECT_ID_RE.match(value):
        return (
            f"{value!r} is not a valid project id: 6 to 30 characters of lowercase letters, "
            "digits and hyphens, starting with a letter and not ending with a hyphen"
        )
    if "google" in value:
        return f"{value!r} contains 'google', which Google Cloud refuses in project ids"
    return None


def bucket_name_problem(name: str) -> str | None:
    """Return why Cloud Storage would refuse the bucket name ``name`` for its prefix, or None.

    Only the reserved words are checked here; lengths and characters follow from the rules of
    the project id and the naming prefix that bucket names are built from.
    """
    if name.startswith("goog"):
        return f"bucket name {name!r} starts with 'goog', which Cloud Storage refuses"
    if "google" in name:
        return f"bucket name {name!r} contains 'google', which Cloud Storage refuses"
    return None


def bucket_problem(name: str) -> str | None:
    """Return why Cloud Storage would refuse ``name`` as a bucket name (no dots), or None."""
    if not BUCKET_RE.match(name):
        return (
            f"{name!r} is not a valid bucket name: 3 to 63 characters of lowercase letters, "
            "digits, hyphens and underscores, starting and ending with a letter or digit"
        )
    return bucket_name_problem(name)


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
    if reads_as := yaml_reads_as(prefix):
        return f"{prefix!r} reads as {reads_as} in YAML; choose a prefix that reads as a string"
    if "google" in prefix:
        return (
            f"{prefix!r} contains 'google': bucket names built from it would too, which "
            "Cloud Storage refuses"
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        longest = prefix + max(SERVICE_ACCOUNT_SUFFIXES, key=len)
        return (
            f"{prefix!r} is too long: service account id {longest!r} would exceed "
            f"{SERVICE_ACCOUNT_MAX} characters; use at most {MAX_PREFIX_LENGTH} characters"
        )
    return None


# YAML 1.1 makes y, Y, n and N booleans as well; PyYAML leaves them strings, other YAML 1.1
# readers (e.g. Go's yaml.v2) do not.
_YAML11_SHORT_BOOLEANS = frozenset({"y", "Y", "n", "N"})
_YAML_TAG_WORDS = {
    "bool": "a boolean",
    "null": "null",
    "int": "a number",
    "float": "a number",
    "timestamp": "a date",
}


def yaml_reads_as(value: str) -> str | None:
    """What an unquoted ``value`` reads as in YAML 1.1 if not a string (e.g. "a boolean"), or None.

    Uses the resolver of PyYAML (which `vertexkit.project.config` loads configuration with),
    plus the one-letter booleans of the YAML 1.1 specification.
    """
    if value in _YAML11_SHORT_BOOLEANS:
        return "a boolean"
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    kind = tag.rsplit(":", 1)[-1]
    if kind == "str":
        return None
    return _YAML_TAG_WORDS.get(kind, f"a {kind}")


SLUG_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
SLUG_MAX = 40


def project_slug_problem(slug: str) -> str | None:
    """Return why ``slug`` cannot name the repository, distribution and pipelines, or None."""
    if not SLUG_RE.match(slug) or "--" in slug:
        return (
            f"{slug!r} must be lowercase letters, digits and single hyphens, starting with a "
            "letter and not ending with a hyphen"
        )
    if len(slug) > SLUG_MAX:
        return f"{slug!r} is too long: at most {SLUG_MAX} characters"
    if reads_as := yaml_reads_as(slug):
        return f"{slug!r} reads as {reads_as} in YAML; choose a name that reads as a string"
    return None


PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@functools.cache
def reserved_names() -> dict[str, Any]:
    """The names a package name must not take, by kind (``reserved_names.yaml``).

    copier.yml's package_name validator reads the same file.
    """
    text = resources.files("vertexkit").joinpath("reserved_names.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def package_name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be the import name of the project's package, or None."""
    if not PACKAGE_RE.match(name):
        return (
            f"{name!r} must be a Python identifier of lowercase letters, digits and "
            "underscores, starting with a letter"
        )
    reserved = reserved_names()
    if name in reserved["keywords"]:
        why = "is a Python keyword: the package could not be imported"
    elif name in reserved["stdlib"]:
        why = "is a standard-library module: the package would shadow it"
    elif name in reserved["dependencies"]:
        distributions = ", ".join(reserved["dependencies"][name])
        why = f"is the import name of {distributions}, which the project installs"
    elif name in reserved["project"]:
        why = "would shadow a module the project uses"
    else:
        return None
    return f"{name!r} {why}; choose another name, e.g. {name + '_lib'!r}"


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


# --- the repository CI builds (copier questions source_repo and gitlab_host) ---------------------

REPOSITORY_RES = {
    # owner: letters, digits, single hyphens, at most 39; name: letters, digits, . _ -
    "github": re.compile(r"^[A-Za-z0-9](-?[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}$"),
    # workspace id and repository slug: lowercase
    "bitbucket": re.compile(r"^[a-z0-9][a-z0-9_-]*/[a-z0-9._-]{1,62}$"),
    # group[/subgroup...]/project: each part starts and ends with a letter, digit or _
    "gitlab": re.compile(
        r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?(/[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?){1,20}$"
    ),
}
_REPOSITORY_FORMS = {
    "github": "owner/name, where the owner is letters, digits and single hyphens (at most 39, "
    "not starting or ending with a hyphen) and the name letters, digits, '.', '_' and '-'",
    "bitbucket": "workspace/name in lowercase letters, digits, '-' and '_' ('.' also in the name)",
    "gitlab": "group[/subgroup...]/name, each part letters, digits, '_', '-' and '.', starting "
    "and ending with a letter, digit or '_'",
}
GITLAB_URL_RE = re.compile(r"^https://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?/?$")


def repository_problem(host: str, path: str) -> str | None:
    """Why ``path`` is not a repository path on ``host`` (github, gitlab, bitbucket), or None.

    The same rules as the copier question ``source_repo``.
    """
    if (
        path.startswith(("https://", "http://", "git@", "ssh://"))
        or ".com/" in path
        or (".org/" in path)
    ):
        return f"{path!r} is a URL: give the path only, e.g. 'acme/ml-pipelines'"
    if host not in REPOSITORY_RES:
        return f"{host!r} is not a repository host: github, gitlab or bitbucket"
    if not REPOSITORY_RES[host].match(path):
        return f"{path!r} is not a {host} repository path: {_REPOSITORY_FORMS[host]}"
    if re.search(r"(^|/)\.\.?(/|$)|\.git$|\.atom$", path):
        return f"{path!r}: no part may be '.' or '..', and the name may not end in .git or .atom"
    if host == "gitlab" and re.search(r"[._-]{2}", path):
        return f"{path!r}: GitLab refuses two '.', '_' or '-' in a row in a path"
    return None


def gitlab_url_problem(url: str) -> str | None:
    """Why ``url`` is not the https address of a GitLab instance, or None (question gitlab_host)."""
    if "@" in url.split("://")[-1].split("/")[0]:
        return f"{url!r} must not hold credentials: give the instance's address only"
    if not GITLAB_URL_RE.match(url):
        return (
            f"{url!r} is not an https URL of a GitLab instance without path, query or "
            "fragment, e.g. https://gitlab.com or https://gitlab.example.com"
        )
    return None
