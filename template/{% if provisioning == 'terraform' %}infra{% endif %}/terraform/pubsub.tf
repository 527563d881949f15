# Pub/Sub route of run requests to the submission service: a topic that Cloud Scheduler jobs
# (and other systems) publish JSON run requests to (pipeline and parameters), a push subscription
# that delivers each message to the service with an OIDC token of the push account, retried with
# backoff, and a dead-letter topic, kept by a pull subscription, for messages that failed
# max_delivery_attempts times.

resource "google_pubsub_topic" "topics" {
  # checkov:skip=CKV_GCP_83: customer-supplied keys would need a Cloud KMS key ring and a grant to the Pub/Sub service agent; run requests hold pipeline names and parameters, never secrets, and are encrypted at rest with Google-managed keys
  for_each = toset(var.pubsub_topics)

  project = var.project_id
  name    = each.value
  labels  = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "push" {
  for_each = var.push_subscriptions

  project              = var.project_id
  name                 = each.key
  topic                = google_pubsub_topic.topics[each.value.topic].id
  labels               = var.labels
  ack_deadline_seconds = each.value.ack_deadline_seconds

  push_config {
    push_endpoint = replace(each.value.push_endpoint, "{project_number}", local.project_number)

    oidc_token {
      service_account_email = each.value.service_account
      audience              = replace(each.value.audience, "{project_number}", local.project_number)
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topics[each.value.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  # Never deleted for inactivity: schedules may be weeks apart.
  expiration_policy {
    ttl = ""
  }

  depends_on = [google_cloud_run_v2_service.services, google_cloudfunctions2_function.functions, google_service_account_iam_member.agents]
}

# Messages published to a topic without subscriptions are lost: this keeps the dead letters.
resource "google_pubsub_subscription" "pull" {
  for_each = var.pull_subscriptions

  project                    = var.project_id
  name                       = each.key
  topic                      = google_pubsub_topic.topics[each.value.topic].id
  labels                     = var.labels
  message_retention_duration = each.value.message_retention

  expiration_policy {
    ttl = ""
  }
}

locals {
  topic_roles        = { for b in var.topic_roles : "${b.topic} ${b.role} ${b.member}" => b }
  subscription_roles = { for b in var.subscription_roles : "${b.subscription} ${b.role} ${b.member}" => b }
}

# The Pub/Sub service agent publishes dead letters; Cloud Scheduler's publishes the jobs' messages.
resource "google_pubsub_topic_iam_member" "topics" {
  for_each = local.topic_roles

  project = var.project_id
  topic   = google_pubsub_topic.topics[each.value.topic].name
  role    = each.value.role
  member  = replace(each.value.member, "{project_number}", local.project_number)
}

# The Pub/Sub service agent acknowledges the messages it moves to the dead-letter topic.
resource "google_pubsub_subscription_iam_member" "subscriptions" {
  for_each = local.subscription_roles

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.value.subscription].name
  role         = each.value.role
  member       = replace(each.value.member, "{project_number}", local.project_number)
}
