# Keyless CI (docs/ci-identity.md): a Workload Identity Federation pool with one OIDC provider
# for the CI system (GitHub Actions, GitLab CI, Bitbucket Pipelines or Jenkins). The provider's
# attribute_condition admits only this repository's tokens (and only release tags where the
# environment takes release tags only); the CI deployer account trusts the pool's identities of
# that repository, on the account itself. Nothing here without ci_pool (Cloud Build, no CI).

resource "google_iam_workload_identity_pool" "ci" {
  count = var.ci_pool == null ? 0 : 1

  project                   = var.project_id
  workload_identity_pool_id = var.ci_pool.id
  display_name              = var.ci_pool.display_name
  description               = var.ci_pool.description

  depends_on = [google_project_service.apis]
}

resource "google_iam_workload_identity_pool_provider" "ci" {
  for_each = var.ci_pool == null ? {} : var.ci_pool.providers

  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.ci[0].workload_identity_pool_id
  workload_identity_pool_provider_id = each.key
  display_name                       = each.value.display_name
  attribute_mapping                  = each.value.attribute_mapping
  attribute_condition                = each.value.attribute_condition

  oidc {
    issuer_uri        = each.value.issuer_uri
    allowed_audiences = each.value.allowed_audiences
  }
}

# The pool's name holds the project number: principalSet://iam.googleapis.com/projects/<number>/
# locations/global/workloadIdentityPools/<pool>/attribute.repository/<repository> (or /*).
resource "google_service_account_iam_member" "ci_workload_identity" {
  for_each = var.ci_pool == null ? {} : var.ci_pool.providers

  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.ci_pool.service_account}"
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.ci[0].name}/${each.value.principal}"

  depends_on = [google_service_account.accounts, google_iam_workload_identity_pool_provider.ci]
}

output "ci_workload_identity_providers" {
  description = "Workload Identity Federation providers of the CI system, by id: the resource name (projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>) that CI variables need."
  value       = { for key, provider in google_iam_workload_identity_pool_provider.ci : key => provider.name }
}
