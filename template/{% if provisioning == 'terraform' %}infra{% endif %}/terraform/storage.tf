# The environment's buckets: pipeline root and data. Private (uniform bucket-level access, public
# access prevention), versioned, and temporary pipeline artifacts expire.
resource "google_storage_bucket" "buckets" {
  # checkov:skip=CKV_GCP_62: access logs need a separate log bucket per environment; Cloud Audit Logs (Data Access logs for Cloud Storage) are the supported way to audit reads and writes
  for_each = var.buckets

  project  = var.project_id
  name     = each.key
  location = each.value.location
  labels   = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # False unless `invoke deprovision --delete-data`: a bucket that holds objects is kept.
  force_destroy = var.force_destroy

  versioning {
    enabled = true
  }

  # Temporary pipeline artifacts expire temporary_days after they were written. Without a
  # with_state condition the rule matches live and noncurrent versions alike: a live object
  # becomes noncurrent, and a later pass deletes that version too.
  lifecycle_rule {
    condition {
      age            = each.value.temporary_days
      matches_prefix = [each.value.temporary_prefix]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
