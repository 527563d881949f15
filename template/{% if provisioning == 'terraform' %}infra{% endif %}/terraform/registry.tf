# Artifact Registry: a Docker repository for the base image, a KFP repository for pipeline
# templates.
resource "google_artifact_registry_repository" "repositories" {
  # checkov:skip=CKV_GCP_84: customer-managed keys need a Cloud KMS key ring per region, its rotation and a grant to the Artifact Registry service agent; the repositories hold images and templates built from this repository, encrypted at rest with Google-managed keys
  for_each = var.repositories

  project       = var.project_id
  location      = var.region
  repository_id = each.key
  format        = each.value.format
  description   = each.value.description
  labels        = var.labels

  depends_on = [google_project_service.apis]
}
