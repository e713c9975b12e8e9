variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "covet"
}

variable "environment" {
  description = "Environment name (dev, staging, production)."
  type        = string
}

variable "region" {
  description = "Primary AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "dr_region" {
  description = "Region that receives replicated RDS backups for disaster recovery."
  type        = string
  default     = "eu-central-1"
}

variable "availability_zones" {
  description = "The 3 availability zones of var.region to use."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "Give exactly 3 availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; split into public, private and database subnets over 3 AZs."
  type        = string
  default     = "10.40.0.0/16"
}

variable "domain_name" {
  description = "Host name served by the ALB."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name."
  type        = string
}

variable "image" {
  description = "covet-server image, pinned by digest (repo@sha256:...)."
  type        = string
}

variable "app_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 512
}

variable "app_memory" {
  description = "Fargate task memory (MiB)."
  type        = number
  default     = 1024
}

variable "app_min_count" {
  description = "Minimum number of tasks."
  type        = number
  default     = 3
}

variable "app_max_count" {
  description = "Maximum number of tasks."
  type        = number
  default     = 20
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "Initial RDS storage (GiB); autoscaling up to 5x."
  type        = number
  default     = 50
}

variable "db_backup_retention_days" {
  description = "RDS automated backup (point-in-time recovery) retention."
  type        = number
  default     = 14
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "tls_to_datastores" {
  description = "Require TLS from the app to PostgreSQL and Redis (rds.force_ssl, ElastiCache transit encryption): the app then connects with sslmode=verify-full against the RDS CA bundle in the image and with rediss:// against the system roots (docs/operations/security.md)."
  type        = bool
  default     = true
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (empty: none)."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "CloudWatch log retention."
  type        = number
  default     = 365
}
