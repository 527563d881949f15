# CI provisioning (docs/ci-identity.md), in the environment the main branch deploys to: the CI
# provisioner applies this configuration from the main branch only, the CI planner runs
# `terraform plan -lock=false` for pull requests, read-only. The provisioner's roles are
# admin-type by nature (it creates what this configuration manages, IAM included): merging to
# main is the privilege boundary. Their identities come from the CI pool's principalSets
# narrowed by attribute (ci_identity.tf), or Cloud Build triggers run as them. No keys. Nothing
# here without ci_provisioning (its variable: ci_provisioning_variables.tf).

locals {
  ci_project_roles     = var.ci_provisioning == null ? {} : { for b in var.ci_provisioning.project_roles : "${b.role} ${b.member}" => b }
  ci_state_roles       = var.ci_provisioning == null ? {} : { for b in var.ci_provisioning.state_bucket_roles : "${b.role} ${b.member}" => b }
  ci_account_roles     = var.ci_provisioning == null ? {} : { for b in var.ci_provisioning.service_account_roles : "${b.service_account} ${b.role} ${b.member}" => b }
  ci_workload_identity = var.ci_provisioning == null ? {} : { for w in var.ci_provisioning.workload_identity : "${w.service_account} ${w.principal}" => w }
}

resource "google_service_account" "ci_provisioning" {
  for_each = var.ci_provisioning == null ? {} : var.ci_provisioning.accounts

  project      = var.project_id
  account_id   = each.key
  display_name = each.value.display_name
  description  = each.value.description

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "ci_provisioning" {
  for_each = local.ci_project_roles

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  depends_on = [google_service_account.ci_provisioning]
}

# The state bucket is made by `invoke provision` before Terraform runs, not by this
# configuration: the roles name it.
resource "google_storage_bucket_iam_member" "ci_state" {
  for_each = local.ci_state_roles

  bucket = var.ci_provisioning.state_bucket
  role   = each.value.role
  member = each.value.member

  depends_on = [google_service_account.ci_provisioning]
}

# Cloud Build: the provisioner creates triggers that run as the accounts.
resource "google_service_account_iam_member" "ci_provisioning" {
  for_each = local.ci_account_roles

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
  role               = each.value.role
  member             = each.value.member

  depends_on = [google_service_account.accounts, google_service_account.ci_provisioning]
}

# principalSet://iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/
# <pool>/attribute.ref/refs/heads/main (GitHub's main branch, for the provisioner), ...
resource "google_service_account_iam_member" "ci_provisioning_federation" {
  for_each = local.ci_workload_identity

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value.service_account}"
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.ci[0].name}/${each.value.principal}"

  depends_on = [google_service_account.ci_provisioning, google_iam_workload_identity_pool_provider.ci]
}

output "ci_provisioning_service_accounts" {
  description = "The CI provisioner and planner accounts, by account id: the e-mail CI variables need (GCP_PROVISIONER_SERVICE_ACCOUNT, GCP_PLANNER_SERVICE_ACCOUNT)."
  value       = { for key, account in google_service_account.ci_provisioning : key => account.email }
}
