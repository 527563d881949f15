# Cloud Scheduler jobs (scheduler: cloud-scheduler in config), one per configured schedule: each
# publishes its pipeline's run request to the topic of run requests, in its time zone.
# `invoke schedule --env ENV` updates, pauses, resumes or deletes the same jobs.
resource "google_cloud_scheduler_job" "jobs" {
  for_each = var.scheduler_jobs

  project     = var.project_id
  region      = var.region
  name        = each.key
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = each.value.time_zone

  retry_config {
    retry_count          = each.value.retry_count
    min_backoff_duration = each.value.min_backoff
    max_backoff_duration = each.value.max_backoff
  }

  pubsub_target {
    topic_name = google_pubsub_topic.topics[each.value.topic].id
    data       = each.value.data
  }

  # `invoke schedule --pause` pauses a job: a later apply leaves it paused.
  lifecycle {
    ignore_changes = [paused]
  }

  depends_on = [google_project_service.apis, google_pubsub_topic_iam_member.topics]
}
