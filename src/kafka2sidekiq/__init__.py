"""kafka2sidekiq: messages on a Kafka topic become Sidekiq jobs in Redis."""

__version__ = "0.1.0"
