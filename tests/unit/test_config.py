"""Settings: defaults < env < flags; one clear line per invalid value."""

import pytest

from kafka2sidekiq import config


def test_defaults():
    s = config.load(env={})
    assert s.topic == "sidekiq_out" and s.dead_letter_topic == "sidekiq_out.dlq"
    assert s.batch_size == 1000 and s.timestamps == "float" and s.class_allow is None


def test_env_then_flags_win():
    s = config.load(env={"K2S_BATCH_SIZE": "500", "K2S_TOPIC": "a"}, flags={"batch_size": "250"})
    assert s.batch_size == 250 and s.topic == "a"


def test_librdkafka_passthrough():
    s = config.load(env={"K2S_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "K2S_KAFKA_SASL_MECHANISM": "PLAIN"})
    assert s.kafka == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


def test_lists_and_sizes():
    s = config.load(env={"K2S_CLASS_ALLOW": "A, B::C,", "K2S_MAX_MESSAGE_BYTES": "64kb"})
    assert s.class_allow == {"A", "B::C"} and s.max_message_bytes == 65536


@pytest.mark.parametrize("env,message", [
    ({"K2S_BATCH_SIZE": "0"}, "K2S_BATCH_SIZE='0' is not valid: expected a whole number above 0"),
    ({"K2S_BATCH_SIZE": "lots"}, "K2S_BATCH_SIZE='lots' is not valid: expected a whole number above 0"),
    ({"K2S_TIMESTAMPS": "seconds"}, "K2S_TIMESTAMPS='seconds' is not valid: expected float or ms"),
    ({"K2S_ENCODER": "turbo"}, "K2S_ENCODER='turbo' is not valid: expected auto or fast or python"),
    ({"K2S_MAX_MESSAGE_BYTES": "1tb"}, "K2S_MAX_MESSAGE_BYTES='1tb' is not valid: expected a size"),
    ({"K2S_ADD_ORIGIN": "maybe"}, "K2S_ADD_ORIGIN='maybe' is not valid: expected true or false"),
    ({"K2S_JID_MODE": "uuid"}, "K2S_JID_MODE='uuid' is not valid: expected random or origin"),
    ({"K2S_DEFAULT_QUEUE": "a,b"}, "K2S_DEFAULT_QUEUE='a,b' is not valid"),
])
def test_invalid_setting_names_variable_value_and_form(env, message):
    with pytest.raises(config.ConfigError) as err:
        config.load(env=env)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_flag_errors_name_the_flag():
    with pytest.raises(config.ConfigError, match="^--batch-size='x' is not valid"):
        config.load(env={}, flags={"batch_size": "x"})
