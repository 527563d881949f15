# Drift alerting: the prediction pipeline logs one line per drift breach; this metric counts
# them and the alert policy opens an incident (and notifies the configured channels) when it
# counts any. config/ `monitoring.alert_notification_channels` names the channels.
resource "google_logging_metric" "drift_breaches" {
  project     = var.project_id
  name        = var.drift_alert.metric
  description = var.drift_alert.metric_description
  filter      = var.drift_alert.log_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "drift" {
  project               = var.project_id
  display_name          = var.drift_alert.policy_display_name
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.drift_alert.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = "drift breaches logged"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.drift_breaches.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = var.drift_alert.alignment_period
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = var.drift_alert.auto_close
  }

  documentation {
    content   = var.drift_alert.documentation
    mime_type = "text/markdown"
    subject   = var.drift_alert.policy_display_name
  }
}
