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


BAD = {config._positive_int: "-3", config._byte_size: "12 parsecs", config._non_negative_int: "-1",
       config._mark: "lots", config._flag: "maybe", config._listen: "nowhere", config._file: "/no/such.pem"}


@pytest.mark.parametrize("setting", [s for s in config.SETTINGS if s.parse not in (str, config._name_list)],
                         ids=lambda s: s.env)
def test_every_checked_setting_rejects_a_bad_value_in_one_line(setting):
    bad = BAD.get(setting.parse, "nonsense")
    with pytest.raises(config.ConfigError) as err:
        config.load(env={setting.env: bad})
    assert str(err.value) == f"{setting.env}={bad!r} is not valid: expected {setting.expected}"


@pytest.mark.parametrize("env,message", [
    ({"K2S_REDIS_URL": "localhost:6379"}, "K2S_REDIS_URL='localhost:6379' is not valid"),
    ({"K2S_REDIS_URL": "redis://u:hunter2@h:1/0", "K2S_REDIS_TLS_CA": __file__},
     "K2S_REDIS_TLS_* is set but K2S_REDIS_URL='redis://u:***@h:1/0' is not a rediss:// URL"),
    ({"K2S_REDIS_URL": "rediss://h:1/0", "K2S_REDIS_TLS_CERT": __file__}, "K2S_REDIS_TLS_CERT and K2S_REDIS_TLS_KEY go"),
    ({"K2S_LIMITER_HIGH": "50%", "K2S_LIMITER_LOW": "60%"}, "K2S_LIMITER_LOW must be below K2S_LIMITER_HIGH"),
])
def test_settings_that_do_not_fit_together(env, message):
    with pytest.raises(config.ConfigError) as err:
        config.load(env=env)
    assert str(err.value).startswith(message) and "hunter2" not in str(err.value)


def test_tls_files_reach_the_redis_client_only_for_rediss():
    s = config.load(env={"K2S_REDIS_URL": "rediss://h:1/0", "K2S_REDIS_TLS_CA": __file__})
    assert s.redis_tls == {"ssl_ca_certs": __file__}
    assert config.load(env={}).redis_tls == {}


def test_http_listen_address():
    assert config.load(env={"K2S_HTTP": "127.0.0.1:9394"}).http == ("127.0.0.1", 9394)
    assert config.load(env={"K2S_HTTP": ":9394"}).http == ("0.0.0.0", 9394)
    assert config.load(env={}).http is None
