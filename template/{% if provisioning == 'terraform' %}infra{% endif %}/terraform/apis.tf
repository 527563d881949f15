# The APIs the chosen stack needs, and no more (the list comes from vertexkit).
resource "google_project_service" "apis" {
  for_each = toset(var.apis)

  project = var.project_id
  service = each.value

  # Other workloads of the project may use these APIs too: tearing this environment down
  # leaves them enabled.
  disable_on_destroy = false
}
