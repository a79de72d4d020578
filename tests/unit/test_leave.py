"""Leaving the group speaks to the same brokers, with the same credentials, as the
coordinator's librdkafka client; what it cannot carry over it names."""

import pytest

from kafka2sidekiq import config
from kafka2sidekiq.coordinator import consumer_config
from kafka2sidekiq.leave import admin_config, leave_group


def test_brokers_and_sasl_scram_over_tls_carry_over():
    settings = config.load(env={
        "K2S_BOOTSTRAP_SERVERS": "a:9093,b:9093", "K2S_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "K2S_KAFKA_SASL_MECHANISMS": "scram-sha-512", "K2S_KAFKA_SASL_USERNAME": "bridge",
        "K2S_KAFKA_SASL_PASSWORD": "s3cret", "K2S_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem"})
    admin = admin_config(consumer_config(settings))
    assert admin["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert admin["security_protocol"] == "SASL_SSL" and admin["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (admin["sasl_plain_username"], admin["sasl_plain_password"]) == ("bridge", "s3cret")
    assert admin["ssl_cafile"] == "/etc/ca.pem" and admin["client_id"] == "kafka2sidekiq-coordinator"


def test_a_login_it_cannot_make_is_named():
    settings = config.load(env={"K2S_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                "K2S_KAFKA_SASL_MECHANISM": "OAUTHBEARER"})
    with pytest.raises(ValueError, match="OAUTHBEARER"):
        admin_config(consumer_config(settings))


def test_no_broker_means_a_warning_not_a_failed_stop(caplog):
    kafka = {"bootstrap.servers": "127.0.0.1:1", "sasl.mechanism": "GSSAPI"}
    assert leave_group(kafka, "g", "host-a") is False
    assert "cannot leave group g" in caplog.text and "session timeout" in caplog.text
