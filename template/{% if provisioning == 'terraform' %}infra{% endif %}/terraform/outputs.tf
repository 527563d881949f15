output "bucket_names" {
  description = "Names of the environment's buckets (pipeline root and data)."
  value       = sort([for bucket in google_storage_bucket.buckets : bucket.name])
}

output "repository_ids" {
  description = "Artifact Registry repositories, by repository id: the full resource id (projects/<project>/locations/<region>/repositories/<id>)."
  value       = { for key, repository in google_artifact_registry_repository.repositories : key => repository.id }
}

output "repository_uris" {
  description = "Artifact Registry repositories, by repository id: the endpoint images and templates are pushed to (e.g. <region>-docker.pkg.dev/<project>/<id>)."
  value       = { for key, repository in google_artifact_registry_repository.repositories : key => repository.registry_uri }
}

output "service_account_emails" {
  description = "E-mail addresses of the environment's service accounts, by account id."
  value       = { for key, account in google_service_account.accounts : key => account.email }
}

output "secret_ids" {
  description = "Secret Manager secrets created empty, by name: the full resource id (projects/<project>/secrets/<name>)."
  value       = { for key, secret in google_secret_manager_secret.secrets : key => secret.id }
}
