# The submission service (services/submission/): a private Cloud Run service created from its
# image by digest, or a 2nd gen Cloud Function built from its staged, zipped source, and who may
# invoke it. Only the members of run_service_roles (the Pub/Sub push account and the CI deployer)
# get roles/run.invoker: never allUsers. Both maps are empty until vertexkit knows what to deploy
# (`invoke build` records the image, or the service already runs one; before that, `invoke
# provision` says why it waits).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Google's service agents and the service's URL are named by the project number.
  project_number = data.google_project.this.number
  service_environment = {
    for name, service in merge(var.run_services, var.functions) :
    name => { for key, value in service.environment : key => replace(value, "{project_number}", local.project_number) }
  }
  run_service_roles           = { for b in var.run_service_roles : "${b.service} ${b.role} ${b.member}" => b }
  agent_service_account_roles = { for b in var.agent_service_account_roles : "${b.service_account} ${b.role} ${b.member}" => b }
}

resource "google_cloud_run_v2_service" "services" {
  for_each = var.run_services

  project  = var.project_id
  name     = each.key
  location = var.region
  labels   = var.labels
  # Reachable over HTTPS, and only with an identity token of a member of run_service_roles.
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  # `invoke deprovision` deletes the service with the rest of the environment.
  deletion_protection = false

  template {
    service_account                  = each.value.service_account
    timeout                          = "60s"
    max_instance_request_concurrency = 80

    scaling {
      min_instance_count = 0
      max_instance_count = 10
    }

    containers {
      image = each.value.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = true
      }

      dynamic "env" {
        for_each = local.service_environment[each.key]
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  # Terraform creates the service from the recorded image; each later image is deployed by
  # `invoke publish` / `invoke promote` (Cloud Run Admin API, as the CI deployer), so the two do
  # not fight over it.
  lifecycle {
    ignore_changes = [template[0].containers[0].image]
  }

  depends_on = [google_project_service.apis, google_service_account.accounts]
}

# The function's source, zipped by `invoke provision`; the object name carries the source's hash,
# so a changed source is a new object and a new build.
resource "google_storage_bucket_object" "function_sources" {
  for_each = var.functions

  bucket       = google_storage_bucket.buckets[each.value.source_bucket].name
  name         = each.value.source_object
  source       = each.value.source_path
  content_type = "application/zip"
}

resource "google_cloudfunctions2_function" "functions" {
  # checkov:skip=CKV_GCP_124: callers outside Google Cloud (CI, other systems) reach the function over HTTPS, and every request needs an identity token of a member of run_service_roles: there is no public invoker
  for_each = var.functions

  project     = var.project_id
  name        = each.key
  location    = var.region
  labels      = var.labels
  description = "Submission service: starts this project's published pipelines (vertexkit)."

  build_config {
    runtime     = each.value.runtime
    entry_point = each.value.entry_point
    # Built as the builder account into the environment's Docker repository, not as Google's
    # default build account.
    service_account   = "projects/${var.project_id}/serviceAccounts/${each.value.build_service_account}"
    docker_repository = google_artifact_registry_repository.repositories[each.value.docker_repository].id

    source {
      storage_source {
        bucket = google_storage_bucket_object.function_sources[each.key].bucket
        object = google_storage_bucket_object.function_sources[each.key].name
      }
    }
  }

  service_config {
    service_account_email          = each.value.service_account
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    available_memory               = "512M"
    timeout_seconds                = 60
    max_instance_count             = 10
    environment_variables          = local.service_environment[each.key]
  }

  depends_on = [google_project_service.apis, google_service_account.accounts, google_service_account_iam_member.service_accounts]
}

# roles/run.invoker on the service; a 2nd gen function is invoked through its Cloud Run service,
# which has the function's name.
resource "google_cloud_run_v2_service_iam_member" "services" {
  for_each = local.run_service_roles

  project  = var.project_id
  location = var.region
  name     = each.value.service
  role     = each.value.role
  member   = each.value.member

  depends_on = [google_cloud_run_v2_service.services, google_cloudfunctions2_function.functions, google_service_account.accounts]
}

# Roles of Google's service agents on the environment's accounts (Pub/Sub mints the push tokens).
resource "google_service_account_iam_member" "agents" {
  for_each = local.agent_service_account_roles

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
  role               = each.value.role
  member             = replace(each.value.member, "{project_number}", local.project_number)

  depends_on = [google_project_service.apis, google_service_account.accounts]
}

output "submission_service_urls" {
  description = "URL of the submission service (Cloud Run service or 2nd gen function), by name; empty until it is deployed."
  value = merge(
    { for key, service in google_cloud_run_v2_service.services : key => service.uri },
    { for key, function in google_cloudfunctions2_function.functions : key => function.service_config[0].uri },
  )
}
