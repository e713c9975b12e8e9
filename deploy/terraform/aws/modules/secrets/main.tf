# Secrets Manager entries read by the ECS task (valueFrom): DATABASE_URL, REDIS_URL and
# COVET_API_TOKEN, each a whole value because covet-server reads them as single env vars.
# Passwords are generated here and handed to RDS/ElastiCache.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the secrets."
  type        = string
}

variable "db_endpoint" {
  description = "RDS endpoint (host:port)."
  type        = string
}

variable "db_name" {
  description = "Database name."
  type        = string
}

variable "db_username" {
  description = "Database user."
  type        = string
}

variable "redis_address" {
  description = "ElastiCache primary endpoint address."
  type        = string
}

variable "redis_tls" {
  description = "Whether Redis requires TLS (rediss://)."
  type        = bool
}

variable "db_tls" {
  description = "Whether PostgreSQL requires TLS: the URL then asks for sslmode=verify-full (the CA is the RDS bundle baked into the image, COVET_DATABASE_CA_FILE)."
  type        = bool
}

resource "random_password" "db" {
  length  = 40
  special = false
}

resource "random_password" "redis" {
  length  = 64
  special = false
}

resource "random_password" "api_token" {
  length  = 48
  special = false
}

locals {
  values = {
    "database-url" = "postgres://${var.db_username}:${random_password.db.result}@${var.db_endpoint}/${var.db_name}${var.db_tls ? "?sslmode=verify-full" : ""}"
    "redis-url"    = var.redis_tls ? "rediss://:${random_password.redis.result}@${var.redis_address}:6379/0" : "redis://${var.redis_address}:6379/0"
    "api-token"    = random_password.api_token.result
  }
}

resource "aws_secretsmanager_secret" "this" {
  # checkov:skip=CKV2_AWS_57: Rotation needs the app to reload its pools; rotate by re-applying with a new random_password (docs/operations/security.md).
  for_each                = local.values
  name                    = "${var.name}/${each.key}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each      = local.values
  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = each.value
}

output "db_password" {
  description = "Database master password."
  value       = random_password.db.result
  sensitive   = true
}

output "redis_auth_token" {
  description = "Redis AUTH token."
  value       = random_password.redis.result
  sensitive   = true
}

output "database_url_arn" {
  description = "Secret holding DATABASE_URL."
  value       = aws_secretsmanager_secret.this["database-url"].arn
}

output "redis_url_arn" {
  description = "Secret holding REDIS_URL."
  value       = aws_secretsmanager_secret.this["redis-url"].arn
}

output "api_token_arn" {
  description = "Secret holding COVET_API_TOKEN."
  value       = aws_secretsmanager_secret.this["api-token"].arn
}

output "secret_arns" {
  description = "All three secret ARNs."
  value       = [for s in aws_secretsmanager_secret.this : s.arn]
}
