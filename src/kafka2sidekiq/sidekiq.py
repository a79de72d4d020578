"""The Sidekiq contract: key names, payload keys and limits the bridge writes by.

Facts and sources: shared/sidekiq-format.md. Everything the encoders, the sink and the
tests agree on lives here, once.
"""

# Redis keys (a namespace prefix, Sidekiq 6 only, goes in front of each).
QUEUES_KEY = "queues"          # set of queue names (Web UI, stats)
QUEUE_KEY_PREFIX = "queue:"    # list per queue: LPUSH by clients, BRPOP by Sidekiq
SCHEDULE_KEY = "schedule"      # sorted set, score = run-at epoch seconds (float)


def key_prefix(namespace: str) -> str:
    """What goes in front of every key: redis-namespace's ``<namespace>:``, or nothing."""
    return f"{namespace}:" if namespace else ""


# Keys the bridge writes itself; a producer's extra keys may not repeat them.
RESERVED_KEYS = frozenset({
    "class", "args", "queue", "jid", "retry", "created_at", "enqueued_at", "at",
    "wrapped", "k2s_origin",
})

# Timestamp formats for created_at / enqueued_at.
TIMESTAMPS_FLOAT = "float"     # epoch seconds, float: read right by Sidekiq 6, 7 and 8
TIMESTAMPS_MS = "ms"           # epoch milliseconds, integer: Sidekiq 8 only

# Sidekiq's own bulk guidance: at most 1000 jobs per LPUSH, 100 per scheduled ZADD.
MAX_PUSH_BULK = 1000
MAX_SCHEDULE_BULK = 100

# The failover replies after which Sidekiq reconnects and retries.
FAILOVER_ERRORS = ("READONLY", "NOREPLICAS", "UNBLOCKED")
