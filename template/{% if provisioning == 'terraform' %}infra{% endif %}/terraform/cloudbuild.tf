# Cloud Build as the CI system (docs/ci-identity.md): a 2nd-gen connection to the repository
# host, the repository linked through it, and the environment's triggers, which run as the CI
# deployer account (infra-apply and infra-plan: the CI provisioner and planner, ci_provisioning.tf) and log to Cloud Logging. The host's tokens live in Secret Manager secrets
# that the team creates once; this configuration reads them by name (latest version) and never
# holds their values. Nothing here without cloud_build.

data "google_project" "cloud_build" {
  count = var.cloud_build == null ? 0 : 1

  project_id = var.project_id
}

# Cloud Build's service agent reads the tokens when it connects to the host.
resource "google_secret_manager_secret_iam_member" "cloud_build_tokens" {
  for_each = var.cloud_build == null ? toset([]) : toset(values(var.cloud_build.secrets))

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:service-${data.google_project.cloud_build[0].number}@gcp-sa-cloudbuild.iam.gserviceaccount.com"

  depends_on = [google_project_service.apis]
}

locals {
  # Secret versions by use (authorizer, read_authorizer, webhook).
  cloud_build_versions = var.cloud_build == null ? {} : {
    for use, secret in var.cloud_build.secrets : use => "projects/${var.project_id}/secrets/${secret}/versions/latest"
  }
}

resource "google_cloudbuildv2_connection" "ci" {
  count = var.cloud_build == null ? 0 : 1

  project  = var.project_id
  location = var.region
  name     = var.cloud_build.connection

  dynamic "github_config" {
    for_each = var.cloud_build.host == "github" ? [var.cloud_build] : []
    content {
      app_installation_id = github_config.value.app_installation_id
      authorizer_credential {
        oauth_token_secret_version = local.cloud_build_versions["authorizer"]
      }
    }
  }

  dynamic "gitlab_config" {
    for_each = var.cloud_build.host == "gitlab" ? [var.cloud_build] : []
    content {
      host_uri                      = gitlab_config.value.host_uri
      webhook_secret_secret_version = local.cloud_build_versions["webhook"]
      read_authorizer_credential {
        user_token_secret_version = local.cloud_build_versions["read_authorizer"]
      }
      authorizer_credential {
        user_token_secret_version = local.cloud_build_versions["authorizer"]
      }
    }
  }

  dynamic "bitbucket_cloud_config" {
    for_each = var.cloud_build.host == "bitbucket" ? [var.cloud_build] : []
    content {
      workspace                     = bitbucket_cloud_config.value.workspace
      webhook_secret_secret_version = local.cloud_build_versions["webhook"]
      read_authorizer_credential {
        user_token_secret_version = local.cloud_build_versions["read_authorizer"]
      }
      authorizer_credential {
        user_token_secret_version = local.cloud_build_versions["authorizer"]
      }
    }
  }

  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.cloud_build_tokens]
}

resource "google_cloudbuildv2_repository" "ci" {
  count = var.cloud_build == null ? 0 : 1

  project           = var.project_id
  location          = var.region
  name              = var.cloud_build.repository
  parent_connection = google_cloudbuildv2_connection.ci[0].name
  remote_uri        = var.cloud_build.remote_uri
}

# Pull requests and pushes to main (dev), or release tags behind a manual approval (the
# environments that take release tags only). Build logs stay in Cloud Logging: no
# include_build_logs, and the build files set options.logging CLOUD_LOGGING_ONLY.
resource "google_cloudbuild_trigger" "ci" {
  for_each = var.cloud_build == null ? {} : var.cloud_build.triggers

  project         = var.project_id
  location        = var.region
  name            = each.key
  description     = each.value.description
  filename        = each.value.filename
  service_account = "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
  included_files  = each.value.included_files

  repository_event_config {
    repository = google_cloudbuildv2_repository.ci[0].id

    dynamic "pull_request" {
      for_each = each.value.pull_request_branch == null ? [] : [each.value.pull_request_branch]
      content {
        branch = pull_request.value
        # Outside contributors' pull requests build only after a collaborator's /gcbrun.
        comment_control = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
      }
    }

    dynamic "push" {
      for_each = each.value.pull_request_branch == null ? [each.value] : []
      content {
        branch = push.value.push_branch
        tag    = push.value.push_tag
      }
    }
  }

  approval_config {
    approval_required = each.value.approval_required
  }

  depends_on = [google_service_account.accounts, google_project_iam_member.project, google_service_account.ci_provisioning]
}

output "cloud_build_triggers" {
  description = "Cloud Build triggers of the environment, by name: the trigger id."
  value       = { for key, trigger in google_cloudbuild_trigger.ci : key => trigger.trigger_id }
}

output "cloud_build_connection_action" {
  description = "What the Cloud Build connection still needs, if anything: the installation stage's message and link (empty once the connection is complete)."
  value       = [for connection in google_cloudbuildv2_connection.ci : connection.installation_state]
}
