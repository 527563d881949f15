"""Project configuration: ``config/base.yaml``, one overlay per environment, environment variables.

Later sources win: ``config/base.yaml`` < ``config/<env>.yaml`` < ``VERTEXKIT__SECTION__KEY``
environment variables (values are read as YAML scalars, so ``true`` and ``3`` keep their type).
Every error names the file (or variable) that set the offending field.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from vertexkit.project import naming
from vertexkit.project.naming import secret_name_problem
from vertexkit.project.params import ParameterRule
from vertexkit.project.schedule import cron_problem, timezone_problem
from vertexkit.project.settings import ComponentName, ComponentResources, KfpSettings

BASE_FILE = "base.yaml"
# A pipeline parameter of this name gets the environment's drift-check settings (see
# ProjectConfig.monitoring_parameter), the way the other configured values reach pipelines.
MONITORING_PARAMETER = "monitoring"
_MONITORING_FIELDS = frozenset(
    {"name", "naming_prefix", "gcp", "orchestrator", "kfp", "resources", "endpoints", "monitoring"}
)
ENV_PREFIX = "VERTEXKIT__"
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

Path_ = tuple[str, ...]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the field."""


def _identifier(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        if not IDENTIFIER_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid {kind} name: lowercase letters, digits and "
                "underscores, not starting with a digit"
            )
        return value

    return AfterValidator(check)


# Keys of the parameter and pipeline mappings; errors point at the offending key.
ParameterName = Annotated[str, _identifier("parameter")]
PipelineName = Annotated[str, _identifier("pipeline")]


def _secret_name(value: Any) -> str:
    # Never repeat the entry in the error: it may be a secret value pasted by mistake.
    if problem := secret_name_problem(value):
        raise ValueError(
            f"not a valid secret name: {problem}; list the names of secrets here, "
            "never their values"
        )
    return value


# Checked before pydantic's own type check so that no error message quotes an entry.
SecretName = Annotated[str, BeforeValidator(_secret_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GcpConfig(_Strict):
    """Where the environment's resources live."""

    project_id: str = Field(
        description="Google Cloud project id of the environment (6-30 characters, e.g. "
        "acme-ml-dev)."
    )
    region: str = Field(
        description="Region of Vertex AI Pipelines, the bucket and the repositories, e.g. "
        "europe-west4."
    )

    @field_validator("project_id")
    @classmethod
    def _project_id(cls, value: str) -> str:
        if problem := naming.project_id_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if problem := naming.region_problem(value):
            raise ValueError(problem)
        return value


class ScheduleConfig(_Strict):
    """When a pipeline runs on its own, in one environment (``invoke schedule`` applies it)."""

    cron: str = Field(
        description="Five-field unix cron (minute hour day-of-month month day-of-week), e.g. "
        "'0 6 * * MON'; lists, ranges, */n steps and the names JAN-DEC, SUN-SAT."
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone the cron is read in, e.g. Europe/Paris (default UTC).",
    )
    parameters: dict[ParameterName, Any] = Field(
        default_factory=dict,
        description="Values of the scheduled runs' parameters; they win over the pipeline's "
        "configured parameters and lose to --param.",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if problem := cron_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if problem := timezone_problem(value):
            raise ValueError(problem)
        return value


class PipelineConfig(_Strict):
    """Settings of one pipeline in ``pipelines/``."""

    parameters: dict[ParameterName, Any] = Field(
        default_factory=dict,
        description="Values of the pipeline's parameters; they win over the shared parameters "
        "and lose to --param.",
    )
    parameter_rules: dict[ParameterName, ParameterRule] = Field(
        default_factory=dict,
        description="Bounds (ge, gt, le, lt) or choices of parameters, by name: values outside "
        "them are refused before a run starts or a compile writes them.",
    )
    # Vertex AI's execution cache, applied when the pipeline is submitted. kfp's local runner
    # caches only pipelines with control flow, so local runs always execute every task.
    enable_caching: bool = Field(
        default=False,
        description="Vertex AI's execution cache for every task, set when compiling for an "
        "environment; local runs always execute every task.",
    )
    schedule: ScheduleConfig | None = Field(
        default=None,
        description="When the pipeline runs on its own in this environment (scheduler: vertex or "
        "cloud-scheduler); `invoke schedule --env ENV` applies it.",
    )


class LocalConfig(_Strict):
    """Settings of ``invoke run --local``."""

    output_dir: str = Field(
        default="build/local",
        description="Folder of local runs' outputs and logs, relative to the project.",
    )


ProvisioningTool = Literal["terraform", "gcloud", "none"]
PROVISIONING_TOOLS: tuple[str, ...] = ("terraform", "gcloud", "none")


class ProvisioningConfig(_Strict):
    """How ``invoke provision`` creates the environment's infrastructure."""

    tool: ProvisioningTool = Field(
        default="terraform",
        description="terraform (infra/terraform, state in a bucket), gcloud (commands planned by "
        "vertexkit) or none (managed elsewhere; `invoke precheck` lists what must exist).",
    )
    temporary_artifact_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Objects under pipeline-root/ in the bucket older than this many days are "
        "deleted by a lifecycle rule.",
    )
    state_bucket: str | None = Field(
        default=None,
        description="Bucket of the Terraform state; default <project_id>-<naming_prefix>-tfstate.",
    )

    @field_validator("state_bucket")
    @classmethod
    def _state_bucket(cls, value: str | None) -> str | None:
        if value is not None and (problem := naming.bucket_problem(value)):
            raise ValueError(problem)
        return value


ServiceKind = Literal["cloud-run", "cloud-functions", "none"]
SERVICE_KINDS: tuple[str, ...] = ("cloud-run", "cloud-functions", "none")


class ServiceConfig(_Strict):
    """The submission service (services/submission/): how it runs and what it accepts."""

    kind: ServiceKind = Field(
        default="none",
        description="cloud-run (a container), cloud-functions (2nd gen) or none (no service).",
    )
    max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        le=10_485_760,
        description="Largest request body the service reads; larger ones are refused with 413.",
    )
    push_audience: str | None = Field(
        default=None,
        min_length=1,
        description="When set, POST /pubsub/push accepts only Pub/Sub push requests whose OIDC "
        "token has this audience (the push subscription's audience, e.g. the service URL).",
    )
    push_service_account: str | None = Field(
        default=None,
        min_length=1,
        description="When set, POST /pubsub/push accepts only OIDC tokens of this service "
        "account e-mail (the push subscription's service account).",
    )


SCHEDULERS: tuple[str, ...] = ("vertex", "cloud-scheduler", "none")


class ResourcesConfig(_Strict):
    """Names of the environment's cloud resources; unset names derive from the naming prefix."""

    bucket: str | None = Field(
        default=None,
        description="Cloud Storage bucket of pipeline roots (default: "
        "<project_id>-<naming_prefix>-pipelines).",
    )
    docker_repository: str | None = Field(
        default=None,
        description="Artifact Registry Docker repository of the base image (default: "
        "<naming_prefix>-images).",
    )
    kfp_repository: str | None = Field(
        default=None,
        description="Artifact Registry KFP repository of compiled templates (default: "
        "<naming_prefix>-pipelines).",
    )
    pipeline_service_account: str | None = Field(
        default=None,
        description="E-mail of the service account pipeline runs use (default: "
        "<naming_prefix>-pipelines@<project_id>.iam.gserviceaccount.com).",
    )


class DriftThresholds(_Strict):
    """Limits of the drift measures; a value above its limit is a breach."""

    distance: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Jensen-Shannon divergence (numeric features) or L-infinity distance "
        "(categorical ones) from the training data's distribution, 0 to 1.",
    )
    missing_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Increase of the share of missing values over the training data's.",
    )
    out_of_range_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of values outside the training data's [min, max], or in categories "
        "it never had.",
    )


class FeatureThresholds(_Strict):
    """One feature's own limits; unset ones are the default thresholds."""

    distance: float | None = Field(default=None, ge=0, le=1, description="See thresholds.")
    missing_rate: float | None = Field(default=None, ge=0, le=1, description="See thresholds.")
    out_of_range_rate: float | None = Field(default=None, ge=0, le=1, description="See thresholds.")


_CHANNEL_RE = re.compile(
    r"^(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/)?[A-Za-z0-9_-]{1,128}$"
)


def _channel(value: str) -> str:
    if not _CHANNEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a notification channel: its id (e.g. 1234567890123456789) or "
            "projects/PROJECT/notificationChannels/ID, as `gcloud beta monitoring channels "
            "list` shows"
        )
    return value


class MonitoringConfig(_Strict):
    """Drift checks of the prediction pipeline, their alerts and the retraining they trigger."""

    thresholds: DriftThresholds = Field(
        default_factory=DriftThresholds, description="Default limits of every feature."
    )
    features: dict[str, FeatureThresholds] = Field(
        default_factory=dict,
        description="Limits of single features, by column name; they win over thresholds.",
    )
    retrain_on_drift: bool = Field(
        default=False,
        description="Submit the training pipeline when a prediction run finds drift (at most "
        "once per retrain_cooldown_hours); off: the breach is only reported and alerted.",
    )
    retrain_cooldown_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 365,
        description="Hours after a drift-triggered retraining during which no other is started.",
    )
    alert_notification_channels: list[Annotated[str, AfterValidator(_channel)]] = Field(
        default_factory=list,
        description="Cloud Monitoring notification channels (ids or full names) of the drift "
        "alert policy that invoke provision creates; empty: the policy notifies nobody.",
    )


class Resources(_Strict):
    """The resolved resource names of one environment."""

    bucket: str
    docker_repository: str
    kfp_repository: str
    pipeline_service_account: str
    deployer_service_account: str
    build_service_account: str
    state_bucket: str
    submission_service_account: str
    # CI only, first environment, Terraform (docs/ci-identity.md): applies and plans infra/.
    provisioner_service_account: str
    planner_service_account: str

    @property
    def pipeline_root(self) -> str:
        return f"gs://{self.bucket}/pipeline-root"


CiSystem = Literal[
    "cloud-build", "github-actions", "gitlab-ci", "bitbucket-pipelines", "jenkins", "none"
]
RepositoryHost = Literal["github", "gitlab", "bitbucket"]
# The CI systems that run on one repository host only.
CI_REPOSITORY_HOSTS = {
    "github-actions": "github",
    "gitlab-ci": "gitlab",
    "bitbucket-pipelines": "bitbucket",
}


UUID_PATTERN = (
    r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$"
)
HTTPS_URL_PATTERN = r"^https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s?#]*)?$"


def _bare_uuid(value: str | None) -> str | None:
    """A Bitbucket UUID without its braces, lowercase (None stays None)."""
    return None if value is None else value.strip("{}").lower()


class CiConfig(_Strict):
    """The CI system and the source repository it builds."""

    system: CiSystem = Field(
        default="none",
        description="The CI system that builds and deploys this project (copier question ci).",
    )
    repository_host: RepositoryHost | None = Field(
        default=None, description="Where the source repository is hosted."
    )
    repository: str | None = Field(
        default=None,
        description="The repository path: owner/name (GitHub), workspace/name (Bitbucket) or "
        "group[/subgroup...]/name (GitLab); the provisioning admits only this repository.",
    )
    gitlab_url: str = Field(
        default="https://gitlab.com",
        description="The GitLab instance (self-managed GitLab: its https URL).",
    )
    # Further settings that provisioning needs (docs/ci-identity.md) and cannot derive.
    release_tags_only: bool | None = Field(
        default=None,
        description="Admit only release tags (vX.Y.Z) of the repository to deploy to this "
        "environment, the target of promotions; default: false in dev, true in every other "
        "environment.",
    )
    github_app_installation_id: int | None = Field(
        default=None,
        ge=1,
        description="Cloud Build with GitHub: the installation id of the Cloud Build GitHub App "
        "(the number at the end of the app's Configure page URL, "
        "https://github.com/settings/installations/<id>).",
    )
    bitbucket_workspace_uuid: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="Bitbucket Pipelines: the workspace UUID, the end of the OIDC Audience "
        "(Repository settings > Pipelines > OpenID Connect).",
    )
    bitbucket_repository_uuid: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="Bitbucket Pipelines: the repository UUID (Repository settings > Pipelines > "
        "OpenID Connect), the only repository claim in Bitbucket's tokens.",
    )
    bitbucket_deployment_environment_uuid: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="Bitbucket Pipelines, environments taking release tags only: the UUID of "
        "this environment's Bitbucket deployment environment (Repository settings > Pipelines > "
        "OpenID Connect > Deployment environments).",
    )
    jenkins_issuer: str | None = Field(
        default=None,
        pattern=HTTPS_URL_PATTERN,
        description="Jenkins with the OpenID Connect Provider plugin: the issuer URI of the id "
        "token credential (e.g. https://jenkins.example.com/oidc).",
    )
    jenkins_job_url: str | None = Field(
        default=None,
        pattern=HTTPS_URL_PATTERN,
        description="Jenkins with the OpenID Connect Provider plugin: the URL of the job (the "
        "multibranch project) that builds this repository, the tokens' sub claim prefix (e.g. "
        "https://jenkins.example.com/job/acme-ml/).",
    )
    jenkins_agent_member: str | None = Field(
        default=None,
        pattern=r"^(serviceAccount:[a-z][a-z0-9-]{4,28}[a-z0-9]\.svc\.id\.goog\[[^\]\s/]+/[^\]\s/]+\]"
        r"|principal://iam\.googleapis\.com/\S+/subject/ns/[^\s/]+/sa/[^\s/]+)$",
        description="Jenkins agents on GKE: their Kubernetes service account "
        "(serviceAccount:<project>.svc.id.goog[<namespace>/<name>], or its principal:// "
        "identifier), which then runs as the CI deployer through Workload Identity Federation "
        "for GKE. Agents on Compute Engine need no setting: attach the CI deployer to their VMs.",
    )

    @field_validator("repository_host")
    @classmethod
    def _host_of_system(cls, value: str | None, info: ValidationInfo) -> str | None:
        needed = CI_REPOSITORY_HOSTS.get(info.data.get("system", ""))
        if value is not None and needed and value != needed:
            raise ValueError(
                f"{info.data['system']} runs only on {needed} repositories: set repository_host "
                f"to {needed}, or system to cloud-build or jenkins (they work with {value})"
            )
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str | None, info: ValidationInfo) -> str | None:
        host = info.data.get("repository_host")
        if value is not None and host is None:
            raise ValueError("set repository_host too: github, gitlab or bitbucket")
        if value is not None and (problem := naming.repository_problem(host, value)):
            raise ValueError(problem)
        return value

    @field_validator("gitlab_url")
    @classmethod
    def _gitlab_url(cls, value: str) -> str:
        if problem := naming.gitlab_url_problem(value):
            raise ValueError(problem)
        return value

    @field_validator(
        "bitbucket_workspace_uuid",
        "bitbucket_repository_uuid",
        "bitbucket_deployment_environment_uuid",
    )
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return _bare_uuid(value)

    @field_validator("jenkins_job_url")
    @classmethod
    def _job_url(cls, value: str | None) -> str | None:
        return value if value is None or value.endswith("/") else value + "/"


class ProjectConfig(_Strict):
    """The validated configuration of one environment (or of local runs: base.yaml alone)."""

    name: str = Field(
        min_length=1, description="The project slug: names experiments and run labels."
    )
    naming_prefix: str = Field(
        description="Prefix of every cloud resource name: lowercase letters, digits and single "
        "hyphens, at most 20 characters."
    )
    gcp: GcpConfig = Field(description="The Google Cloud project and region.")
    parameters: dict[ParameterName, Any] = Field(
        default_factory=dict,
        description="Parameters given to every pipeline that declares them.",
    )
    pipelines: dict[PipelineName, PipelineConfig] = Field(
        default_factory=dict,
        description="Settings of each pipeline, by the name of its file in pipelines/.",
    )
    components: dict[ComponentName, ComponentResources] = Field(
        default_factory=dict,
        description="Machines of the components that pipelines wrap with "
        "vertexkit.local.sizing.sized, by kfp component name (train-model); applied when "
        "compiling, never in local runs.",
    )
    local: LocalConfig = Field(
        default_factory=LocalConfig, description="Settings of invoke run --local."
    )
    resources: ResourcesConfig = Field(
        default_factory=ResourcesConfig,
        description="Names of the environment's cloud resources, when not the derived ones.",
    )
    provisioning: ProvisioningConfig = Field(
        default_factory=ProvisioningConfig,
        description="How invoke provision creates the environment's infrastructure.",
    )
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Base URLs that replace Google's public endpoints, by service name.",
    )
    orchestrator: Literal["vertex", "kfp"] = Field(
        default="vertex",
        description="Where --env runs go: Vertex AI Pipelines, or the Kubeflow Pipelines "
        "cluster of kfp.host.",
    )
    kfp: KfpSettings | None = Field(
        default=None,
        validate_default=True,
        description="The Kubeflow Pipelines cluster that runs the pipelines (orchestrator: kfp).",
    )
    secrets: list[SecretName] = Field(
        default_factory=list,
        description=(
            "Names of the secrets components read with vertexkit.gcp.secrets.get_secret: the "
            "environment variable of that name locally, the Secret Manager secret of that "
            "name in gcp.project_id on Vertex AI. Names only, never values."
        ),
    )
    ci: CiConfig = Field(
        default_factory=CiConfig, description="The CI system and the source repository it builds."
    )
    service: ServiceConfig = Field(
        default_factory=ServiceConfig,
        description="The submission service that starts the project's published pipelines "
        "(services/submission/).",
    )
    scheduler: Literal["vertex", "cloud-scheduler", "none"] = Field(
        default="none",
        description="What runs pipelines.<name>.schedule: vertex (Vertex AI schedules), "
        "cloud-scheduler (Cloud Scheduler -> Pub/Sub -> the submission service) or none.",
    )

    monitoring: MonitoringConfig = Field(
        default_factory=MonitoringConfig,
        description="Drift checks of batch predictions, their alerting and drift-triggered "
        "retraining.",
    )

    _environment: str = PrivateAttr(default="local")
    _sources: dict[Path_, str] = PrivateAttr(default_factory=dict)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_list(cls, value: Any) -> Any:
        if not isinstance(value, list):  # not quoted back: it may hold values
            raise ValueError("expected a list of secret names, e.g. [DB_PASSWORD, API_TOKEN]")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets_unique(cls, value: list[str]) -> list[str]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(
                f"{', '.join(twice)} {'is' if len(twice) == 1 else 'are'} listed twice"
            )
        return value

    @field_validator("kfp")
    @classmethod
    def _kfp_when_chosen(cls, value: KfpSettings | None, info: ValidationInfo) -> Any:
        if value is None and info.data.get("orchestrator") == "kfp":
            raise ValueError(
                "orchestrator is kfp: add a kfp section with the cluster's API URL, "
                "e.g. kfp: {host: https://kfp.example.com}"
            )
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler_possible(cls, value: str, info: ValidationInfo) -> str:
        service = info.data.get("service")
        if value == "cloud-scheduler" and service is not None and service.kind == "none":
            raise ValueError(
                "cloud-scheduler publishes to Pub/Sub, which pushes to the submission service, "
                "and service.kind is none: set service.kind to cloud-run or cloud-functions, or "
                "scheduler to vertex or none"
            )
        if value == "vertex" and info.data.get("orchestrator") == "kfp":
            raise ValueError(
                "vertex schedules run on Vertex AI Pipelines, and orchestrator is kfp: set "
                "scheduler to cloud-scheduler (with a submission service) or none"
            )
        return value

    @field_validator("naming_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if problem := naming.prefix_problem(value):
            raise ValueError(problem)
        return value

    @property
    def environment(self) -> str:
        """The environment this config was loaded for (``local`` for base.yaml alone)."""
        return self._environment

    def source_of(self, *path: str) -> str:
        """The file or variable that set ``path`` (or the nearest enclosing section)."""
        for end in range(len(path), 0, -1):
            if source := self._sources.get(tuple(path[:end])):
                return source
        return f"config/{BASE_FILE}"

    def pipeline_parameters(self, pipeline: str, declared: set[str]) -> dict[str, Any]:
        """Configured values for ``pipeline``: shared parameters it declares, then its own."""
        values = {k: v for k, v in self.parameters.items() if k in declared}
        if MONITORING_PARAMETER in declared:
            values[MONITORING_PARAMETER] = self.monitoring_parameter()
        if pipeline in self.pipelines:
            values.update(self.pipelines[pipeline].parameters)
        return values

    def monitoring_parameter(self) -> str:
        """The ``monitoring`` pipeline parameter, JSON: the environment's name and the parts of
        its config a drift check needs at run time (thresholds, retraining, and where and how
        to submit the training pipeline). Names and settings only: the config holds no secrets."""
        data = self.model_dump(mode="json", include=set(_MONITORING_FIELDS), exclude_none=True)
        return json.dumps({"environment": self.environment, "config": data}, sort_keys=True)

    @property
    def names(self) -> Resources:
        """Resource names: configured ones, else derived from the project and naming prefix."""
        project, prefix, configured = self.gcp.project_id, self.naming_prefix, self.resources
        return Resources(
            bucket=configured.bucket or f"{project}-{prefix}-pipelines",
            docker_repository=configured.docker_repository or f"{prefix}-images",
            kfp_repository=configured.kfp_repository or f"{prefix}-pipelines",
            pipeline_service_account=configured.pipeline_service_account
            or f"{prefix}-pipelines@{project}.iam.gserviceaccount.com",
            deployer_service_account=f"{prefix}-deployer@{project}.iam.gserviceaccount.com",
            build_service_account=f"{prefix}-builder@{project}.iam.gserviceaccount.com",
            state_bucket=self.provisioning.state_bucket or f"{project}-{prefix}-tfstate",
            submission_service_account=f"{prefix}-submit@{project}.iam.gserviceaccount.com",
            provisioner_service_account=f"{prefix}-provision@{project}.iam.gserviceaccount.com",
            planner_service_account=f"{prefix}-planner@{project}.iam.gserviceaccount.com",
        )

    def pipeline(self, name: str) -> PipelineConfig:
        return self.pipelines.get(name, PipelineConfig())


def shown_parameter(key: str, value: Any) -> str:
    """``key=value`` for people; the monitoring parameter's JSON is summarised."""
    if key == MONITORING_PARAMETER and isinstance(value, str):
        try:
            environment = json.loads(value)["environment"]
        except (ValueError, TypeError, KeyError):
            return f"{key}={value!r}"
        return f"{key}=<monitoring settings of {environment}>"
    return f"{key}={value!r}"


def config_from_parameter(text: str) -> ProjectConfig:
    """The config that :meth:`ProjectConfig.monitoring_parameter` wrote, validated again."""
    where = f"pipeline parameter {MONITORING_PARAMETER}"
    try:
        data = json.loads(text)
        environment, settings = data["environment"], data["config"]
    except (ValueError, TypeError, KeyError):
        raise ConfigError(
            f"{where}: not the JSON that `invoke compile`/`invoke run` fill it with from "
            "config/ (leave the parameter to them)"
        ) from None
    if not isinstance(environment, str) or not isinstance(settings, dict):
        raise ConfigError(f"{where}: expected environment (text) and config (a mapping)")
    try:
        config = ProjectConfig.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, {(): where})) from None
    config._environment = environment
    return config


def environments(project_dir: str | Path) -> list[str]:
    """Environments that have an overlay file in ``config/``."""
    config_dir = Path(project_dir) / "config"
    return sorted(p.stem for p in config_dir.glob("*.yaml") if p.name != BASE_FILE)


def load_config(
    project_dir: str | Path,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProjectConfig:
    """Load and validate the configuration of ``env`` (None: base.yaml alone, for local runs)."""
    project_dir = Path(project_dir)
    environ = os.environ if environ is None else environ
    base = project_dir / "config" / BASE_FILE
    if not base.is_file():
        raise ConfigError(f"config/{BASE_FILE} not found in {project_dir}: not a vertexkit project")

    sources: dict[Path_, str] = {}
    merged: dict[str, Any] = {}
    _merge(merged, _read_yaml(base, f"config/{BASE_FILE}"), f"config/{BASE_FILE}", (), sources)
    if env is not None:
        known = environments(project_dir)
        if env not in known:
            raise ConfigError(
                f"unknown environment {env!r}: no config/{env}.yaml "
                f"(available: {', '.join(known) or 'none'})"
            )
        label = f"config/{env}.yaml"
        _merge(merged, _read_yaml(project_dir / label, label), label, (), sources)
    for name, path, value in _environment_overrides(environ):
        _merge(merged, _nest(path, value), f"environment variable {name}", (), sources)

    try:
        config = ProjectConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    config._environment = env or "local"
    config._sources = sources
    return config


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{label}: invalid YAML{where}: {exc.problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _merge(
    into: dict[str, Any], new: dict[str, Any], label: str, prefix: Path_, sources: dict
) -> None:
    """Deep-merge ``new`` into ``into``, recording which file set each key."""
    for key, value in new.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            sources.setdefault(path, label)
            _merge(into[key], value, label, path, sources)
        else:
            into[key] = value
            for known in [p for p in sources if p[: len(path)] == path]:
                del sources[known]
            sources[path] = label
            if isinstance(value, dict):
                _record(value, label, path, sources)


def _record(value: dict[str, Any], label: str, prefix: Path_, sources: dict) -> None:
    for key, item in value.items():
        sources[(*prefix, str(key))] = label
        if isinstance(item, dict):
            _record(item, label, (*prefix, str(key)), sources)


def _environment_overrides(environ: Mapping[str, str]) -> list[tuple[str, Path_, Any]]:
    overrides = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty section name")
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            value = environ[name]
        overrides.append((name, path, value))
    return overrides


def _nest(path: Path_, value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def _source(sources: dict[Path_, str], loc: Path_) -> str:
    for end in range(len(loc), 0, -1):
        if label := sources.get(loc[:end]):
            return label
    return f"config/{BASE_FILE}"


def _describe(exc: ValidationError, sources: dict[Path_, str]) -> str:
    lines = []
    for error in exc.errors():
        # A bad mapping key is reported at (..., key, "[key]"): name the key itself.
        loc = tuple(str(part) for part in error["loc"] if part != "[key]")
        field = ".".join(loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown setting {loc[-1]!r}" + _suggest(loc)
        elif error["type"] == "missing":
            message = "required setting is missing"
        elif error["type"] != "value_error" and isinstance(error.get("input"), str | int | float):
            message += f", got {type(error['input']).__name__} {error['input']!r}"
            if isinstance(error["input"], bool) and error["type"] == "string_type":
                message += " (YAML reads yes/no/on/off/true/false as booleans: quote the value)"
        lines.append(f"{_source(sources, loc)}: {field}: {message}")
    count = len(lines)
    header = f"invalid configuration ({count} problem{'s' if count > 1 else ''}):"
    return "\n".join([header, *(f"  {line}" for line in lines)])


def _suggest(loc: Path_) -> str:
    """Suggest the nearest valid key for an unknown one, from the models' fields."""
    model: type[BaseModel] | None = ProjectConfig
    parents = list(loc[:-1])
    while parents and model is not None:
        name = parents.pop(0)
        annotation = model.model_fields[name].annotation if name in model.model_fields else None
        if get_origin(annotation) in (Union, UnionType):  # an optional section, e.g. kfp
            members = [a for a in get_args(annotation) if a is not type(None)]
            annotation = members[0] if len(members) == 1 else None
        value_type = get_args(annotation)[-1] if get_origin(annotation) is dict else None
        if isinstance(value_type, type) and issubclass(value_type, BaseModel):
            if parents:
                parents.pop(0)  # the mapping key, e.g. the pipeline name
            model = value_type
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    if model is None:
        return ""
    valid = sorted(model.model_fields)
    close = difflib.get_close_matches(loc[-1], valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid: {', '.join(valid)})"
