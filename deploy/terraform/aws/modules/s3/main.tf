# Buckets: uploads (application data), backups (logical exports, restore drills), logs (ALB
# and S3 access logs). All private, versioned, TLS-only, with lifecycle rules.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for uploads and backups."
  type        = string
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_elb_service_account" "current" {}

locals {
  kms_buckets = {
    uploads = "${var.name}-uploads-${data.aws_caller_identity.current.account_id}"
    backups = "${var.name}-backups-${data.aws_caller_identity.current.account_id}"
  }
}

# --- logs: ALB access logs (which support only SSE-S3) and the other buckets' access logs.
resource "aws_s3_bucket" "logs" {
  # checkov:skip=CKV_AWS_145: ALB access logs can only be written to SSE-S3 (AES256) buckets, not SSE-KMS.
  # checkov:skip=CKV_AWS_18: This is the access-log target; logging it to itself would loop.
  # checkov:skip=CKV_AWS_144: Logs are not replicated cross-region; they are not needed to recover.
  # checkov:skip=CKV2_AWS_62: Nothing consumes events of the log bucket.
  bucket        = "${var.name}-logs-${data.aws_caller_identity.current.account_id}"
  force_destroy = false
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = 400
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "AlbAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.current.arn]
    }
  }
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

# --- uploads and backups: SSE-KMS, access-logged, versioned.
resource "aws_s3_bucket" "kms" {
  # checkov:skip=CKV_AWS_144: Cross-region copies of backups come from RDS backup replication (modules/rds); uploads are recreated by the app.
  # checkov:skip=CKV2_AWS_62: No consumer of object events exists yet; add a notification when one does.
  for_each      = local.kms_buckets
  bucket        = each.value
  force_destroy = false
}

resource "aws_s3_bucket_public_access_block" "kms" {
  for_each                = aws_s3_bucket.kms
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "kms" {
  for_each = aws_s3_bucket.kms
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "kms" {
  for_each = aws_s3_bucket.kms
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "kms" {
  for_each = aws_s3_bucket.kms
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "kms" {
  for_each      = aws_s3_bucket.kms
  bucket        = each.value.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${each.key}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "kms" {
  for_each = aws_s3_bucket.kms
  bucket   = each.value.id
  rule {
    id     = "noncurrent"
    status = "Enabled"
    filter {}
    noncurrent_version_transition {
      noncurrent_days = 30
      storage_class   = "STANDARD_IA"
    }
    noncurrent_version_expiration {
      noncurrent_days = each.key == "backups" ? 90 : 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "kms" {
  for_each = aws_s3_bucket.kms
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "kms" {
  for_each = aws_s3_bucket.kms
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.kms[each.key].json
}

output "logs_bucket" {
  description = "Access-log bucket name."
  value       = aws_s3_bucket.logs.id
}

output "uploads_bucket_arn" {
  description = "Uploads bucket ARN."
  value       = aws_s3_bucket.kms["uploads"].arn
}

output "backups_bucket" {
  description = "Backups bucket name."
  value       = aws_s3_bucket.kms["backups"].id
}

output "region" {
  description = "Region of the buckets."
  value       = data.aws_region.current.name
}
