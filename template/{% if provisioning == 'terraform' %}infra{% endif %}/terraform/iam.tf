# One service account per duty, and every role binding of the environment. Roles are granted on
# the resource wherever the API allows it (bucket, repository, service account, secret), and on
# the project only where Google offers nothing narrower. No service-account keys.

resource "google_service_account" "accounts" {
  for_each = var.service_accounts

  project      = var.project_id
  account_id   = each.key
  display_name = each.value.display_name
  description  = each.value.description

  depends_on = [google_project_service.apis]
}

# Bindings keyed "<resource> <role> <member>": adding or removing one binding leaves the others
# untouched in the plan.
locals {
  project_roles         = { for b in var.project_roles : "${var.project_id} ${b.role} ${b.member}" => b }
  bucket_roles          = { for b in var.bucket_roles : "${b.bucket} ${b.role} ${b.member}" => b }
  repository_roles      = { for b in var.repository_roles : "${b.repository} ${b.role} ${b.member}" => b }
  service_account_roles = { for b in var.service_account_roles : "${b.service_account} ${b.role} ${b.member}" => b }
  secret_roles          = { for b in var.secret_roles : "${b.secret} ${b.role} ${b.member}" => b }
}

resource "google_project_iam_member" "project" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  depends_on = [google_project_service.apis, google_service_account.accounts]
}

resource "google_storage_bucket_iam_member" "buckets" {
  for_each = local.bucket_roles

  bucket = google_storage_bucket.buckets[each.value.bucket].name
  role   = each.value.role
  member = each.value.member

  depends_on = [google_service_account.accounts]
}

resource "google_artifact_registry_repository_iam_member" "repositories" {
  for_each = local.repository_roles

  project    = var.project_id
  location   = google_artifact_registry_repository.repositories[each.value.repository].location
  repository = google_artifact_registry_repository.repositories[each.value.repository].name
  role       = each.value.role
  member     = each.value.member

  depends_on = [google_service_account.accounts]
}

resource "google_service_account_iam_member" "service_accounts" {
  for_each = local.service_account_roles

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
  role               = each.value.role
  member             = each.value.member

  depends_on = [google_service_account.accounts]
}

resource "google_secret_manager_secret_iam_member" "secrets" {
  for_each = local.secret_roles

  project   = var.project_id
  secret_id = google_secret_manager_secret.secrets[each.value.secret].secret_id
  role      = each.value.role
  member    = each.value.member

  depends_on = [google_service_account.accounts]
}
