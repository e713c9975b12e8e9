# covet-server on AWS: ECS Fargate behind an ALB in a 3-AZ VPC, RDS PostgreSQL Multi-AZ,
# ElastiCache Redis Multi-AZ, S3, Secrets Manager, CloudWatch. One customer-managed KMS key
# encrypts everything that accepts one.
#   terraform init -backend-config=backend.hcl && terraform plan -var-file=terraform.tfvars

data "aws_caller_identity" "current" {}

# Exactly the zones named in var.availability_zones, so a zone AWS adds later never moves
# subnets around.
data "aws_availability_zones" "selected" {
  state = "available"
  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

locals {
  prefix = "${var.name}-${var.environment}"
  azs    = sort(data.aws_availability_zones.selected.names)
  tags = {
    Project     = var.name
    Environment = var.environment
    ManagedBy   = "terraform"
  }
  # covet-server ports (example-server/src/config.rs): API and admin (/metrics, /health*).
  app_port   = 8080
  admin_port = 9090
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: A key policy's resource is always the key itself ("*" means this key).
  # checkov:skip=CKV_AWS_111: Same: "*" in a key policy is the key itself, not all resources.
  # checkov:skip=CKV_AWS_356: Same: "*" in a key policy is the key itself, not all resources.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${local.prefix}: logs, secrets, database, cache, buckets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.main.key_id
}

module "vpc" {
  source = "./modules/vpc"

  name               = local.prefix
  cidr               = var.vpc_cidr
  azs                = local.azs
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days
}

module "s3" {
  source = "./modules/s3"

  name        = local.prefix
  kms_key_arn = aws_kms_key.main.arn
}

module "secrets" {
  source = "./modules/secrets"

  name          = local.prefix
  kms_key_arn   = aws_kms_key.main.arn
  db_endpoint   = module.rds.endpoint
  db_name       = module.rds.db_name
  db_username   = module.rds.username
  redis_address = module.elasticache.primary_endpoint
  redis_tls     = var.tls_to_datastores
  db_tls        = var.tls_to_datastores
}

module "alb" {
  source = "./modules/alb"

  name              = local.prefix
  vpc_id            = module.vpc.vpc_id
  vpc_cidr          = var.vpc_cidr
  public_subnet_ids = module.vpc.public_subnet_ids
  certificate_arn   = var.certificate_arn
  logs_bucket       = module.s3.logs_bucket
  app_port          = local.app_port
  admin_port        = local.admin_port
  kms_key_arn       = aws_kms_key.main.arn
  # ECS has no preStop hook: the ALB's deregistration delay plays its part. It covers
  # COVET_PRE_STOP_DELAY (5 s) + COVET_DRAIN_TIMEOUT (30 s).
  deregistration_delay = 35
  # Also the idle limit of the ALB's keep-alive connections to the tasks: below the app's
  # COVET_IDLE_TIMEOUT (75 s, module "ecs" below) so the ALB closes them first, and at least
  # COVET_DRAIN_TIMEOUT (30 s) so a draining request is not cut (check_consistency.py).
  idle_timeout       = 60
  log_retention_days = var.log_retention_days
}

module "iam" {
  source = "./modules/iam"

  name           = local.prefix
  kms_key_arn    = aws_kms_key.main.arn
  secret_arns    = module.secrets.secret_arns
  uploads_bucket = module.s3.uploads_bucket_arn
  log_group_arn  = module.cloudwatch.app_log_group_arn
}

module "cloudwatch" {
  source = "./modules/cloudwatch"

  name                   = local.prefix
  kms_key_arn            = aws_kms_key.main.arn
  log_retention_days     = var.log_retention_days
  alarm_email            = var.alarm_email
  alb_arn_suffix         = module.alb.arn_suffix
  target_group_suffix    = module.alb.target_group_arn_suffix
  ecs_cluster_name       = module.ecs.cluster_name
  ecs_service_name       = module.ecs.service_name
  db_instance_id         = module.rds.instance_id
  redis_replication_id   = module.elasticache.replication_group_id
  app_min_count          = var.app_min_count
  db_allocated_storage_b = var.db_allocated_storage * 1024 * 1024 * 1024
}

module "rds" {
  source = "./modules/rds"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name                  = local.prefix
  vpc_id                = module.vpc.vpc_id
  subnet_ids            = module.vpc.database_subnet_ids
  client_security_group = module.ecs.security_group_id
  instance_class        = var.db_instance_class
  allocated_storage     = var.db_allocated_storage
  backup_retention_days = var.db_backup_retention_days
  kms_key_arn           = aws_kms_key.main.arn
  password              = module.secrets.db_password
  force_ssl             = var.tls_to_datastores
  log_retention_days    = var.log_retention_days
}

module "elasticache" {
  source = "./modules/elasticache"

  name                  = local.prefix
  vpc_id                = module.vpc.vpc_id
  subnet_ids            = module.vpc.database_subnet_ids
  client_security_group = module.ecs.security_group_id
  node_type             = var.redis_node_type
  kms_key_arn           = aws_kms_key.main.arn
  auth_token            = module.secrets.redis_auth_token
  transit_encryption    = var.tls_to_datastores
  log_retention_days    = var.log_retention_days
}

module "ecs" {
  source = "./modules/ecs"

  name                  = local.prefix
  region                = var.region
  vpc_id                = module.vpc.vpc_id
  vpc_cidr              = var.vpc_cidr
  private_subnet_ids    = module.vpc.private_subnet_ids
  alb_security_group_id = module.alb.security_group_id
  target_group_arn      = module.alb.target_group_arn
  target_group_suffix   = module.alb.target_group_arn_suffix
  alb_arn_suffix        = module.alb.arn_suffix
  image                 = var.image
  cpu                   = var.app_cpu
  memory                = var.app_memory
  min_count             = var.app_min_count
  max_count             = var.app_max_count
  app_port              = local.app_port
  admin_port            = local.admin_port
  execution_role_arn    = module.iam.execution_role_arn
  task_role_arn         = module.iam.task_role_arn
  log_group_name        = module.cloudwatch.app_log_group_name
  kms_key_arn           = aws_kms_key.main.arn
  secrets = {
    DATABASE_URL    = module.secrets.database_url_arn
    REDIS_URL       = module.secrets.redis_url_arn
    COVET_API_TOKEN = module.secrets.api_token_arn
  }
  environment = {
    COVET_LISTEN           = "0.0.0.0:${local.app_port}"
    COVET_ADMIN_LISTEN     = "0.0.0.0:${local.admin_port}"
    COVET_LOG_FORMAT       = "json"
    COVET_RATE_LIMIT       = "100/s"
    COVET_RATE_LIMIT_BURST = "200"
    COVET_RATE_LIMIT_STORE = "redis"
    # The ALB connects from inside the VPC and appends the client address to X-Forwarded-For.
    COVET_TRUSTED_PROXIES = var.vpc_cidr
    COVET_PRE_STOP_DELAY  = "5s"
    COVET_DRAIN_TIMEOUT   = "30s"
    # No COVET_ADMIN_LINGER (default 0s): no Prometheus scrapes the tasks (their admin port
    # admits only the ALB's health checks; CloudWatch alarms watch the ALB and ECS metrics), so
    # there is no last scrape to wait for. Adding a scraper: set it to its scrape interval and
    # add it to stop_timeout (check_consistency.py).
    # Longer than the ALB's idle_timeout (60 s, module "alb" above).
    COVET_IDLE_TIMEOUT = "75s"
    OTEL_SERVICE_NAME  = "covet-server"
    # RDS's certificates chain to Amazon's RDS CAs, which are not in the system roots: the image
    # carries their bundle (deploy/Dockerfile). ElastiCache's chain to public roots: no CA file.
    COVET_DATABASE_CA_FILE = var.tls_to_datastores ? "/etc/ssl/certs/rds-global-bundle.pem" : ""
  }
  # Fargate's stopTimeout (SIGTERM -> SIGKILL, max 120 s): pre-stop 5 + drain 30 + admin
  # linger 0 + flush 10.
  stop_timeout = 45
}
