# Every value comes from build/terraform/<env>.tfvars.json, which `invoke provision` writes from
# the environment's validated config (config/base.yaml + config/<env>.yaml): edit the config,
# not this file. The validations repeat the rules that matter for security, so that a hand-written
# tfvars file cannot slip past them.

variable "project_id" {
  description = "Google Cloud project id of the environment (gcp.project_id in config/<env>.yaml)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6 to 30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the environment's Artifact Registry repositories and Vertex AI Pipelines (gcp.region)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region is a Google Cloud region such as europe-west4."
  }
}

variable "labels" {
  description = "Labels put on every bucket, repository and secret (managed-by, environment, project)."
  type        = map(string)
  nullable    = false

  validation {
    condition     = alltrue([for key, value in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))])
    error_message = "Label keys are 1 to 63 lowercase letters, digits, underscores and hyphens, starting with a letter; values are at most 63 of the same characters."
  }
}

variable "apis" {
  description = "Services to enable, e.g. aiplatform.googleapis.com: the ones the chosen stack needs, and no more."
  type        = list(string)
  nullable    = false

  validation {
    condition     = alltrue([for api in var.apis : endswith(api, ".googleapis.com")])
    error_message = "Each API is a service name ending in .googleapis.com."
  }
}

variable "buckets" {
  description = "Buckets by name: location, and the prefix of temporary pipeline artifacts deleted after temporary_days."
  type = map(object({
    location         = string
    temporary_prefix = string
    temporary_days   = number
  }))
  nullable = false

  validation {
    condition     = alltrue([for bucket in values(var.buckets) : bucket.temporary_days >= 1 && bucket.temporary_days <= 3650 && floor(bucket.temporary_days) == bucket.temporary_days])
    error_message = "temporary_days is a whole number of days from 1 to 3650 (provisioning.temporary_artifact_days)."
  }

  validation {
    condition     = alltrue([for bucket in values(var.buckets) : length(bucket.temporary_prefix) > 1 && endswith(bucket.temporary_prefix, "/")])
    error_message = "temporary_prefix is a folder such as pipeline-root/: not empty, ending with a slash, so that the lifecycle rule never matches the whole bucket."
  }
}

variable "repositories" {
  description = "Artifact Registry repositories by repository id: format (DOCKER for the base image, KFP for pipeline templates) and description."
  type = map(object({
    format      = string
    description = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for repository in values(var.repositories) : contains(["DOCKER", "KFP"], repository.format)])
    error_message = "A repository's format is DOCKER or KFP."
  }
}

variable "service_accounts" {
  description = "Service accounts by account id (the part of the e-mail before @): display name and description."
  type = map(object({
    display_name = string
    description  = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for id in keys(var.service_accounts) : can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", id))])
    error_message = "A service account id is 6 to 30 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "secrets" {
  description = "Names of the Secret Manager secrets to create, empty (secrets in config)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = alltrue([for secret in var.secrets : can(regex("^[A-Za-z0-9_-]{1,255}$", secret))])
    error_message = "A secret name is 1 to 255 letters, digits, hyphens and underscores."
  }
}

variable "project_roles" {
  description = "Roles granted on the project, only where Google offers no narrower resource: role and member (serviceAccount:<email>)."
  type = list(object({
    role   = string
    member = string
  }))
  nullable = false

  validation {
    condition = alltrue([
      for binding in var.project_roles : !contains(["roles/owner", "roles/editor"], binding.role) && !can(regex("(?i)admin", binding.role))
    ])
    error_message = "No roles/owner, roles/editor or administrator role on the project: grant a narrower role, on the resource where possible."
  }

  validation {
    condition = alltrue([
      for binding in var.project_roles : !contains(["roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"], binding.role)
    ])
    error_message = "Grant roles/iam.serviceAccountUser and roles/iam.serviceAccountTokenCreator on the service account (service_account_roles), not on the project, where they would cover every account."
  }

  validation {
    condition     = alltrue([for binding in var.project_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity (Workload Identity Federation); never allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = length(distinct(var.project_roles)) == length(var.project_roles)
    error_message = "Each project role binding appears once."
  }
}

variable "bucket_roles" {
  description = "Roles granted on buckets of var.buckets: bucket name, role and member (serviceAccount:<email>)."
  type = list(object({
    bucket = string
    role   = string
    member = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for binding in var.bucket_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity (Workload Identity Federation); never allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = length(distinct(var.bucket_roles)) == length(var.bucket_roles)
    error_message = "Each bucket role binding appears once."
  }
}

variable "repository_roles" {
  description = "Roles granted on repositories of var.repositories: repository id, role and member (serviceAccount:<email>)."
  type = list(object({
    repository = string
    role       = string
    member     = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for binding in var.repository_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity (Workload Identity Federation); never allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = length(distinct(var.repository_roles)) == length(var.repository_roles)
    error_message = "Each repository role binding appears once."
  }
}

variable "service_account_roles" {
  description = "Roles granted on service accounts (e.g. roles/iam.serviceAccountUser, to act as one): the account's e-mail, role and member."
  type = list(object({
    service_account = string
    role            = string
    member          = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for binding in var.service_account_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity (Workload Identity Federation); never allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = length(distinct(var.service_account_roles)) == length(var.service_account_roles)
    error_message = "Each service account role binding appears once."
  }
}

variable "secret_roles" {
  description = "Roles granted on secrets of var.secrets (roles/secretmanager.secretAccessor for the pipeline runner): secret name, role and member."
  type = list(object({
    secret = string
    role   = string
    member = string
  }))
  nullable = false

  validation {
    condition     = alltrue([for binding in var.secret_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity (Workload Identity Federation); never allUsers or allAuthenticatedUsers."
  }

  validation {
    condition     = length(distinct(var.secret_roles)) == length(var.secret_roles)
    error_message = "Each secret role binding appears once."
  }
}

variable "force_destroy" {
  description = "Delete the buckets' objects when the buckets are destroyed. Set to true only by `invoke deprovision --delete-data`; otherwise destroying a bucket that holds objects fails and the data is kept."
  type        = bool
  default     = false
  nullable    = false
}

variable "ci_pool" {
  description = "Workload Identity Federation pool of the external CI system (docs/ci-identity.md): its OIDC providers, and the CI deployer account their identities act as; null without one."
  type = object({
    id              = string
    display_name    = string
    description     = string
    service_account = string
    providers = map(object({
      display_name        = string
      issuer_uri          = string
      attribute_mapping   = map(string)
      attribute_condition = string
      allowed_audiences   = list(string)
      principal           = string
    }))
  })
  default = null

  validation {
    condition     = var.ci_pool == null || alltrue([for provider in values(try(var.ci_pool.providers, {})) : length(trimspace(provider.attribute_condition)) > 0])
    error_message = "Every CI provider has an attribute_condition: without one, any token of the issuer (any repository) could act as the CI deployer."
  }

  validation {
    condition     = var.ci_pool == null || alltrue([for provider in values(try(var.ci_pool.providers, {})) : startswith(provider.issuer_uri, "https://")])
    error_message = "A CI provider's issuer_uri is an https URL."
  }

  validation {
    condition     = var.ci_pool == null || can(regex("^[a-z0-9-]{4,32}$", try(var.ci_pool.id, "")))
    error_message = "The pool id is 4 to 32 lowercase letters, digits and hyphens."
  }
}

variable "cloud_build" {
  description = "Cloud Build as the CI system (docs/ci-identity.md): the 2nd-gen connection (host, Secret Manager secrets of its tokens by use), the linked repository and the triggers, each running as its service_account (the CI deployer; the provisioner and planner for infra-apply and infra-plan); null without Cloud Build."
  type = object({
    connection          = string
    host                = string
    host_uri            = string
    app_installation_id = number
    workspace           = string
    secrets             = map(string)
    repository          = string
    remote_uri          = string
    triggers = map(object({
      description         = string
      filename            = string
      approval_required   = bool
      included_files      = list(string)
      pull_request_branch = string
      push_branch         = string
      push_tag            = string
      service_account     = string
    }))
  })
  default = null

  validation {
    condition     = var.cloud_build == null || contains(["github", "gitlab", "bitbucket"], try(var.cloud_build.host, ""))
    error_message = "The Cloud Build connection's host is github, gitlab or bitbucket."
  }

  validation {
    condition     = var.cloud_build == null || alltrue([for trigger in values(try(var.cloud_build.triggers, {})) : trigger.push_tag == null || trigger.approval_required])
    error_message = "A trigger on release tags requires approval: promotions wait for a Cloud Build approver."
  }

  validation {
    condition     = var.cloud_build == null || alltrue([for trigger in values(try(var.cloud_build.triggers, {})) : length([for event in [trigger.pull_request_branch, trigger.push_branch, trigger.push_tag] : event if event != null]) == 1])
    error_message = "A trigger has exactly one of pull_request_branch, push_branch and push_tag."
  }
}

# --- the submission service, its Pub/Sub route and Cloud Scheduler jobs (service.tf, pubsub.tf,
# scheduler.tf). Members may name a Google service agent by "{project_number}", which Terraform
# fills in.

variable "agent_service_account_roles" {
  description = "Roles of Google's service agents on service accounts (the Pub/Sub agent mints the push account's tokens): the account's e-mail, role and member with {project_number}."
  type = list(object({
    service_account = string
    role            = string
    member          = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for binding in var.agent_service_account_roles : can(regex("^serviceAccount:service-\\{project_number\\}@gcp-sa-[a-z-]+\\.iam\\.gserviceaccount\\.com$", binding.member))])
    error_message = "A member here is a Google service agent, serviceAccount:service-{project_number}@gcp-sa-<service>.iam.gserviceaccount.com."
  }
}

variable "run_services" {
  description = "The submission service on Cloud Run, by service name (empty until its image is built): the image by digest, the service account it runs as and its environment variables."
  type = map(object({
    image           = string
    service_account = string
    environment     = map(string)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for service in values(var.run_services) : can(regex("^[a-z0-9.-]+/[^@\\s]+@sha256:[0-9a-f]{64}$", service.image))])
    error_message = "The service's image is referenced by digest: REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:<64 hex digits>."
  }
}

variable "functions" {
  description = "The submission service as a 2nd gen Cloud Function, by name: runtime, entry point, the zipped source (local path, bucket and object), the accounts it runs and builds as, the Docker repository of its build and its environment variables."
  type = map(object({
    runtime               = string
    entry_point           = string
    source_bucket         = string
    source_object         = string
    source_path           = string
    service_account       = string
    build_service_account = string
    docker_repository     = string
    environment           = map(string)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for function in values(var.functions) : can(regex("^python3[0-9]+$", function.runtime))])
    error_message = "A function's runtime is a Python runtime such as python311."
  }
}

variable "pubsub_topics" {
  description = "Pub/Sub topics: the run requests and their dead letters."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "push_subscriptions" {
  description = "Push subscriptions to the submission service, by name: topic, endpoint, the push account and audience of the OIDC token, dead-letter topic and attempts, retry backoff, ack deadline."
  type = map(object({
    topic                 = string
    push_endpoint         = string
    service_account       = string
    audience              = string
    dead_letter_topic     = string
    max_delivery_attempts = number
    minimum_backoff       = string
    maximum_backoff       = string
    ack_deadline_seconds  = number
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for subscription in values(var.push_subscriptions) : startswith(subscription.push_endpoint, "https://") && subscription.service_account != ""])
    error_message = "A push subscription delivers over HTTPS with an OIDC token: push_endpoint starts with https:// and service_account names the push account."
  }

  validation {
    condition     = alltrue([for subscription in values(var.push_subscriptions) : subscription.max_delivery_attempts >= 5 && subscription.max_delivery_attempts <= 100])
    error_message = "max_delivery_attempts is 5 to 100, as Pub/Sub requires."
  }
}

variable "pull_subscriptions" {
  description = "Pull subscriptions, by name: topic and message retention (the dead letters' subscription)."
  type = map(object({
    topic             = string
    message_retention = string
  }))
  default  = {}
  nullable = false
}

variable "scheduler_jobs" {
  description = "Cloud Scheduler jobs, by name: cron, time zone, topic, base64 JSON message, description and retries."
  type = map(object({
    schedule    = string
    time_zone   = string
    topic       = string
    data        = string
    description = string
    retry_count = number
    min_backoff = string
    max_backoff = string
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for job in values(var.scheduler_jobs) : length(split(" ", trimspace(job.schedule))) == 5])
    error_message = "A job's schedule is a five-field cron (vertexkit checks each field)."
  }
}

variable "run_service_roles" {
  description = "Roles on the submission service (roles/run.invoker for the push account and the CI deployer; roles/run.developer for the CI deployer, which deploys new images): service name, role and member."
  type = list(object({
    service = string
    role    = string
    member  = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for binding in var.run_service_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity; never allUsers or allAuthenticatedUsers: the service is private."
  }
}

variable "topic_roles" {
  description = "Roles on Pub/Sub topics (publisher for the Pub/Sub and Cloud Scheduler service agents): topic, role and member."
  type = list(object({
    topic  = string
    role   = string
    member = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for binding in var.topic_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity; never allUsers or allAuthenticatedUsers."
  }
}

variable "subscription_roles" {
  description = "Roles on Pub/Sub subscriptions (subscriber for the Pub/Sub service agent, to dead-letter): subscription, role and member."
  type = list(object({
    subscription = string
    role         = string
    member       = string
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for binding in var.subscription_roles : can(regex("^((serviceAccount|group|user):[^@\\s]+@[^@\\s]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", binding.member))])
    error_message = "A member is serviceAccount:, group: or user: with an e-mail address, or a principal:// or principalSet:// identity; never allUsers or allAuthenticatedUsers."
  }
}

variable "drift_alert" {
  description = "The log-based metric counting the prediction pipeline's drift breach log lines, and the alert policy on it (monitoring.tf; vertexkit.gcp.alerting plans both)."
  type = object({
    metric                = string
    metric_description    = string
    log_filter            = string
    policy_display_name   = string
    documentation         = string
    notification_channels = list(string)
    alignment_period      = string
    auto_close            = string
  })
  nullable = false

  validation {
    condition     = alltrue([for channel in var.drift_alert.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "A notification channel is projects/PROJECT/notificationChannels/ID."
  }
}
