# Secret Manager secrets named in config, created empty: their values are added by the team
# (gcloud secrets versions add), never by this configuration.
resource "google_secret_manager_secret" "secrets" {
  for_each = toset(var.secrets)

  project   = var.project_id
  secret_id = each.value
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}
