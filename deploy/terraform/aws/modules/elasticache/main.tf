# ElastiCache Redis 7: a primary and a replica in different AZs, automatic failover and
# Multi-AZ (the primary endpoint follows the promoted replica), encryption at rest with the
# KMS key and in transit (TLS), AUTH token, daily snapshots, slow and engine logs to CloudWatch.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "VPC id."
  type        = string
}

variable "subnet_ids" {
  description = "Database subnets (3 AZs)."
  type        = list(string)
}

variable "client_security_group" {
  description = "Security group allowed to connect (the ECS tasks)."
  type        = string
}

variable "node_type" {
  description = "Node type."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for data at rest and logs."
  type        = string
}

variable "auth_token" {
  description = "Redis AUTH token."
  type        = string
  sensitive   = true
}

variable "transit_encryption" {
  description = "Require TLS from clients."
  type        = bool
}

variable "log_retention_days" {
  description = "Log retention."
  type        = number
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Redis from covet-server tasks only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "Redis from the tasks"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [var.client_security_group]
  }
}

resource "aws_cloudwatch_log_group" "redis" {
  for_each          = toset(["slow-log", "engine-log"])
  name              = "/aws/elasticache/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "covet-server cache and shared rate-limit state"
  engine               = "redis"
  engine_version       = "7.1"
  node_type            = var.node_type
  port                 = 6379
  parameter_group_name = "default.redis7"

  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = var.transit_encryption
  # AUTH needs TLS on ElastiCache; without TLS the security group is the only gate.
  auth_token = var.transit_encryption ? var.auth_token : null

  snapshot_retention_limit   = 7
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  dynamic "log_delivery_configuration" {
    for_each = aws_cloudwatch_log_group.redis
    content {
      destination      = log_delivery_configuration.value.name
      destination_type = "cloudwatch-logs"
      log_format       = "json"
      log_type         = log_delivery_configuration.key
    }
  }
}

output "primary_endpoint" {
  description = "Primary endpoint address (follows failover)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "replication_group_id" {
  description = "Replication group id."
  value       = aws_elasticache_replication_group.this.id
}

