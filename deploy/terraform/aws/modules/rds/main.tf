# RDS PostgreSQL 16, Multi-AZ (synchronous standby in another AZ, automatic failover in
# 1-2 minutes), encrypted with the KMS key, automated backups with point-in-time recovery
# (transaction logs shipped to S3 every 5 minutes: the RPO mechanism), backups replicated to
# the DR region, IAM auth, Performance Insights, enhanced monitoring, logs to CloudWatch.

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

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

variable "instance_class" {
  description = "Instance class."
  type        = string
}

variable "allocated_storage" {
  description = "Initial storage (GiB)."
  type        = number
}

variable "backup_retention_days" {
  description = "Point-in-time-recovery window."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for storage, Performance Insights and logs."
  type        = string
}

variable "password" {
  description = "Master password."
  type        = string
  sensitive   = true
}

variable "force_ssl" {
  description = "Reject unencrypted client connections (rds.force_ssl)."
  type        = bool
}

variable "log_retention_days" {
  description = "Retention of the exported PostgreSQL logs."
  type        = number
}

locals {
  db_name  = "covet"
  username = "covet"
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL from covet-server tasks only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL from the tasks"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [var.client_security_group]
  }
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-pg16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = var.force_ssl ? "1" : "0"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
}

resource "aws_cloudwatch_log_group" "postgresql" {
  name              = "/aws/rds/instance/${var.name}/postgresql"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = "16.4"
  instance_class = var.instance_class
  db_name        = local.db_name
  username       = local.username
  password       = var.password
  port           = 5432

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.allocated_storage * 5
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = false
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = var.kms_key_arn
  monitoring_interval                 = 30
  monitoring_role_arn                 = aws_iam_role.monitoring.arn

  depends_on = [aws_cloudwatch_log_group.postgresql]
}

# A KMS key in the DR region for the replicated backups.
resource "aws_kms_key" "dr" {
  provider                = aws.dr
  description             = "${var.name}: replicated RDS backups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.dr_key.json
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "dr_key" {
  # checkov:skip=CKV_AWS_109: A key policy's resource is always the key itself ("*" means this key).
  # checkov:skip=CKV_AWS_111: Same: "*" in a key policy is the key itself.
  # checkov:skip=CKV_AWS_356: Same: "*" in a key policy is the key itself.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

# Region failure: automated backups (snapshots + transaction logs) copied to the DR region,
# restorable there to any point in the retention window.
resource "aws_db_instance_automated_backups_replication" "dr" {
  provider               = aws.dr
  source_db_instance_arn = aws_db_instance.this.arn
  kms_key_id             = aws_kms_key.dr.arn
  retention_period       = var.backup_retention_days
}

output "endpoint" {
  description = "host:port of the primary (follows Multi-AZ failover)."
  value       = aws_db_instance.this.endpoint
}

output "instance_id" {
  description = "DB instance identifier."
  value       = aws_db_instance.this.identifier
}

output "db_name" {
  description = "Database name."
  value       = local.db_name
}

output "username" {
  description = "Master user."
  value       = local.username
}
