"""Leaving the consumer group for good.

The coordinator is a static member (group.instance.id): when it closes, it sends no
LeaveGroup, so a host restarted in place gets its own partitions back with no rebalance
at all. A host that is going away for good must say so, or its partitions sit idle until
the session timeout. librdkafka has no call for that; Kafka's admin API does (LeaveGroup
v3+, "remove members from consumer group", KIP-345), and kafka-python implements it,
so the coordinator makes that one request with it after it has committed and closed.
"""

from __future__ import annotations

import logging
from typing import Mapping

log = logging.getLogger(__name__)

TIMEOUT_MS = 5000

# librdkafka setting -> kafka-python KafkaAdminClient argument (the connection only)
_CONNECTION = {
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.crl.location": "ssl_crlfile",
}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}


def admin_config(kafka: Mapping[str, object]) -> dict:
    """KafkaAdminClient arguments for the brokers and security of a librdkafka config.
    Raises ValueError naming what it cannot carry over (e.g. an OAUTHBEARER login)."""
    config: dict = {"bootstrap_servers": str(kafka["bootstrap.servers"]).split(","),
                    "request_timeout_ms": TIMEOUT_MS, "bootstrap_timeout_ms": TIMEOUT_MS}
    for key, arg in _CONNECTION.items():
        if key in kafka:
            config[arg] = str(kafka[key])
    if "security_protocol" in config:
        config["security_protocol"] = config["security_protocol"].upper()
    mechanism = config.get("sasl_mechanism")
    if mechanism is not None:
        config["sasl_mechanism"] = mechanism = mechanism.upper()
        if mechanism not in _MECHANISMS:
            raise ValueError(f"sasl.mechanism {mechanism} is not supported for leaving the group")
    if str(kafka.get("enable.ssl.certificate.verification", "true")).lower() == "false":
        config["ssl_check_hostname"] = False
    return config


def leave_group(kafka: Mapping[str, object], group: str, instance_id: str) -> bool:
    """Remove the static member ``instance_id`` from ``group``: the group rebalances now,
    and the other hosts take its partitions. True when the broker confirmed it."""
    try:
        from kafka.admin import KafkaAdminClient, MemberToRemove
        admin = KafkaAdminClient(**admin_config(kafka))
    except Exception as exc:  # noqa: BLE001 - leaving is best effort; the session timeout remains
        log.warning("cannot leave group %s (%s): its partitions move after the session timeout", group, exc)
        return False
    try:
        result = admin.remove_group_members(group, [MemberToRemove(group_instance_id=instance_id)])
        errors = [e.__name__ for e in result.values() if getattr(e, "errno", 0)]
    except Exception as exc:  # noqa: BLE001
        errors = [str(exc) or type(exc).__name__]
    finally:
        admin.close()
    if errors:
        log.warning("leaving group %s as %s failed (%s): its partitions move after the session timeout",
                    group, instance_id, ", ".join(errors))
        return False
    log.info("left group %s (instance %s): the other hosts take its partitions now", group, instance_id)
    return True
