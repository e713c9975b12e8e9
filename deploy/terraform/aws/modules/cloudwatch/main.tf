# The app's log group, an encrypted SNS topic, and the alarms that page: the AWS-side mirror of
# deploy/prometheus/alert-rules.yml (5xx ratio, p99 latency, unhealthy targets) plus the
# managed services' own saturation signals.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for the log group and the topic."
  type        = string
}

variable "log_retention_days" {
  description = "Log retention."
  type        = number
}

variable "alarm_email" {
  description = "E-mail subscribed to the topic (empty: none)."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ALB ARN suffix."
  type        = string
}

variable "target_group_suffix" {
  description = "Target group ARN suffix."
  type        = string
}

variable "ecs_cluster_name" {
  description = "ECS cluster."
  type        = string
}

variable "ecs_service_name" {
  description = "ECS service."
  type        = string
}

variable "db_instance_id" {
  description = "RDS instance id."
  type        = string
}

variable "redis_replication_id" {
  description = "ElastiCache replication group id (nodes are <id>-001, <id>-002)."
  type        = string
}

variable "app_min_count" {
  description = "Healthy targets below this page."
  type        = number
}

variable "db_allocated_storage_b" {
  description = "Allocated RDS storage in bytes."
  type        = number
}

resource "aws_cloudwatch_log_group" "app" {
  name              = "/ecs/${var.name}/covet-server"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  actions = [aws_sns_topic.alarms.arn]
  alb     = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_suffix }
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx_ratio" {
  alarm_name          = "${var.name}-5xx-ratio"
  alarm_description   = "More than 5% of requests answered 5xx by covet-server for 5 minutes"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0.05
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "ratio"
    expression  = "IF(requests > 0, errors / requests, 0)"
    label       = "5xx ratio"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.alb
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.alb
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "alb_p99_latency" {
  alarm_name          = "${var.name}-p99-latency"
  alarm_description   = "p99 target response time above 1 s for 10 minutes"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = local.alb
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 10
  threshold           = 1
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "healthy_targets" {
  alarm_name          = "${var.name}-healthy-targets"
  alarm_description   = "Fewer ready covet-server tasks than the minimum for 3 minutes"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.alb
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.app_min_count
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "ecs_cpu" {
  alarm_name          = "${var.name}-ecs-cpu"
  alarm_description   = "covet-server CPU above 85% for 10 minutes (autoscaling at max?)"
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = var.ecs_cluster_name, ServiceName = var.ecs_service_name }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "ecs_memory" {
  alarm_name          = "${var.name}-ecs-memory"
  alarm_description   = "covet-server memory above 85% for 10 minutes"
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  dimensions          = { ClusterName = var.ecs_cluster_name, ServiceName = var.ecs_service_name }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "rds_cpu" {
  alarm_name          = "${var.name}-rds-cpu"
  alarm_description   = "PostgreSQL CPU above 80% for 15 minutes"
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = var.db_instance_id }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "rds_storage" {
  alarm_name          = "${var.name}-rds-free-storage"
  alarm_description   = "PostgreSQL free storage below 10% of the allocation"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = var.db_instance_id }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.db_allocated_storage_b * 0.1
  comparison_operator = "LessThanThreshold"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "redis_cpu" {
  count               = 2
  alarm_name          = "${var.name}-redis-${count.index + 1}-engine-cpu"
  alarm_description   = "Redis engine CPU above 80% for 10 minutes"
  namespace           = "AWS/ElastiCache"
  metric_name         = "EngineCPUUtilization"
  dimensions          = { CacheClusterId = format("%s-%03d", var.redis_replication_id, count.index + 1) }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 10
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.actions
}

resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  count               = 2
  alarm_name          = "${var.name}-redis-${count.index + 1}-memory"
  alarm_description   = "Redis memory above 85% of maxmemory"
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = format("%s-%03d", var.redis_replication_id, count.index + 1) }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = local.actions
}

output "app_log_group_name" {
  description = "The app's log group."
  value       = aws_cloudwatch_log_group.app.name
}

output "app_log_group_arn" {
  description = "The app's log group ARN."
  value       = aws_cloudwatch_log_group.app.arn
}

output "alarm_topic_arn" {
  description = "Alarm topic."
  value       = aws_sns_topic.alarms.arn
}
