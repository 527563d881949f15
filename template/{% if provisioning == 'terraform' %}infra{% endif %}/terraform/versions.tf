terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  # State lives in the environment's state bucket: `invoke provision` creates it, then runs
  # terraform init -backend-config=bucket=<state bucket> -backend-config=prefix=<environment>
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
