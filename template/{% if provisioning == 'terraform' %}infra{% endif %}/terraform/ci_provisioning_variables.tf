# The variable of ci_provisioning.tf, apart so that the variables can be checked on their own.

variable "ci_provisioning" {
  description = "The CI provisioner and planner accounts (docs/ci-identity.md): account ids, their roles on the project, the Terraform state bucket and service accounts, and the CI pool's principalSets trusted to act as each; null without them."
  type = object({
    state_bucket = string
    accounts = map(object({
      display_name = string
      description  = string
    }))
    project_roles = list(object({
      role   = string
      member = string
    }))
    state_bucket_roles = list(object({
      role   = string
      member = string
    }))
    service_account_roles = list(object({
      service_account = string
      role            = string
      member          = string
    }))
    workload_identity = list(object({
      service_account = string
      principal       = string
    }))
  })
  default = null

  validation {
    condition     = var.ci_provisioning == null || alltrue([for b in try(var.ci_provisioning.project_roles, []) : !contains(["roles/owner", "roles/editor"], b.role)])
    error_message = "The CI provisioner and planner get no basic owner or editor role: only the predefined roles the plan names."
  }

  validation {
    condition     = var.ci_provisioning == null || alltrue([for w in try(var.ci_provisioning.workload_identity, []) : w.principal != "" && !startswith(w.principal, "/")])
    error_message = "Each principal is a principalSet path of the CI pool, e.g. attribute.ref/refs/heads/main."
  }
}
