output "alb_dns_name" {
  description = "Point domain_name (CNAME/alias) here."
  value       = module.alb.dns_name
}

output "ecs_cluster_name" {
  description = "ECS cluster running covet-server."
  value       = module.ecs.cluster_name
}

output "ecs_service_name" {
  description = "ECS service of covet-server."
  value       = module.ecs.service_name
}

output "db_endpoint" {
  description = "RDS PostgreSQL endpoint (Multi-AZ)."
  value       = module.rds.endpoint
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint (follows failover)."
  value       = module.elasticache.primary_endpoint
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms publish to."
  value       = module.cloudwatch.alarm_topic_arn
}

output "backups_bucket" {
  description = "S3 bucket for logical exports and other backups."
  value       = module.s3.backups_bucket
}
