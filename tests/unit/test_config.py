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
       config._mark: "lots", config._flag: "maybe", config._listen: "nowhere", config._file: "/no/such.pem",
       config.parse_trace_headers: "traceparent,class"}


@pytest.mark.parametrize("setting", [s for s in config.SETTINGS if s.parse not in (str, config._name_list)],
                         ids=lambda s: s.env)
def test_every_checked_setting_rejects_a_bad_value_in_one_line(setting):
    bad = BAD.get(setting.parse, "nonsense")
    with pytest.raises(config.ConfigError) as err:
        config.load(env={setting.env: bad})
    message = str(err.value)
    assert message.startswith(f"{setting.env}={bad!r} is not valid: ") and "\n" not in message
    assert message.endswith((f": expected {setting.expected}", f" (expected {setting.expected})"))


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


# --- the Redis URL and the brokers, read in full at load time ---------------------------

@pytest.mark.parametrize("url,reason", [
    ("redis://127.0.0.1:notaport/0", "port 'notaport' is not a number from 1 to 65535"),
    ("redis://127.0.0.1:0/0", "port '0' is not a number from 1 to 65535"),
    ("redis://127.0.0.1:65536/0", "port '65536' is not a number from 1 to 65535"),
    ("rediss://u:hunter2@h:6379x/0", "port '6379x' is not a number"),
    ("redis://127.0.0.1:6379/zero", "database 'zero' is not a whole number"),
    ("redis://127.0.0.1:6379/0?db=one", "database 'one' is not a whole number"),
    ("redis://127.0.0.1:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout' in connection URL"),
    ("unix://", "no socket path"),
    ("unix://localhost:6379/0", "host 'localhost:6379' given, but a unix:// URL names a socket path"),
    ("redis://[::1/0", "Invalid IPv6 URL"),
])
def test_redis_url_is_read_in_full(url, reason):
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"K2S_REDIS_URL": url})
    message = str(err.value)
    assert message.startswith(f"K2S_REDIS_URL={config.redact(url)!r} is not valid: {reason}")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://127.0.0.1/3", "redis://127.0.0.1:1", "redis://localhost",
    "rediss://k2s:p%40ss@cache.example.com:6380/0", "redis://:secret@[::1]:6379/2",
    "redis://127.0.0.1:6379?db=2&socket_timeout=1.5", "unix:///run/redis/redis.sock",
    "unix://:secret@/run/redis/redis.sock?db=4",
])
def test_redis_urls_that_fit(url):
    assert config.load(env={"K2S_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("servers,reason", [
    ("127.0.0.1:notaport", "'127.0.0.1:notaport': port 'notaport' is not a number"),
    ("kafka1", "'kafka1' is not host:port"),
    ("kafka1:9092,kafka2", "'kafka2' is not host:port"),
    ("kafka1:9092,,kafka2:9092", "an empty entry between commas"),
    (":9092", "':9092' is not host:port"),
    ("::1:9092", "'::1:9092' is not host:port"),
    ("kafka1:99999", "'kafka1:99999': port '99999' is not a number from 1 to 65535"),
    ("", "no broker given"),
])
def test_bootstrap_servers_are_host_and_numeric_port(servers, reason):
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"K2S_BOOTSTRAP_SERVERS": servers})
    assert str(err.value).startswith(f"K2S_BOOTSTRAP_SERVERS={servers!r} is not valid: {reason}")


@pytest.mark.parametrize("servers", ["127.0.0.1:9092", "a:1, b:2 ,c.example.com:9093", "[::1]:9092",
                                     "SSL://kafka1:9093"])
def test_bootstrap_servers_that_fit(servers):
    assert config.load(env={"K2S_BOOTSTRAP_SERVERS": servers}).bootstrap_servers == servers


def test_a_password_is_never_repeated_in_an_error():
    with pytest.raises(config.ConfigError) as err:
        config.load(env={"K2S_REDIS_URL": "redis://bridge:hunter2@h:port/0"})
    assert "hunter2" not in str(err.value) and "bridge:***@h:port" in str(err.value)


# --- unknown K2S_* names: a warning with the nearest name, never an error ---------------

def test_unknown_names_suggest_the_nearest_setting():
    env = {"K2S_BATCH_SIZ": "3", "K2S_REDIS_ULR": "redis://h/0", "K2S_ZZZ_QQQ": "1", "K2S_LOG_FORMATT": "json"}
    warnings = config.unknown_names(env)
    assert warnings == [
        "K2S_BATCH_SIZ is not a setting of kafka2sidekiq and is ignored: did you mean K2S_BATCH_SIZE?",
        "K2S_LOG_FORMATT is not a setting of kafka2sidekiq and is ignored: did you mean K2S_LOG_FORMAT?",
        "K2S_REDIS_ULR is not a setting of kafka2sidekiq and is ignored: did you mean K2S_REDIS_URL?",
        "K2S_ZZZ_QQQ is not a setting of kafka2sidekiq and is ignored: see kafka2sidekiq run --help for the settings",
    ]
    config.load(env=env)  # not an error


def test_names_of_settings_scripts_and_tests_are_not_unknown():
    env = {s.env: s.default for s in config.SETTINGS}
    env.update({"K2S_KAFKA_SASL_MECHANISM": "PLAIN", "K2S_LOG_FORMAT": "json", "K2S_LOCAL_KAFKA_PORT": "29092",
                "K2S_LOCAL_REDIS_PORT": "26379", "K2S_SERVICES_NAME": "test", "K2S_SERVICES_DIR": "/tmp/x",
                "K2S_KAFKA_VERSION": "4.1.1", "K2S_TEST_SEED": "1", "K2S_TEST_KAFKA_PORT": "1",
                "K2S_REQUIRE_COMPILED": "1", "K2S_NO_EXTENSIONS": "1", "K2S_DEBUG_BUILD": "1",
                "K2S_SANITIZE": "address", "PATH": "/bin"})
    assert config.unknown_names(env) == []


def test_the_kafka_version_of_the_services_script_is_no_librdkafka_setting():
    s = config.load(env={"K2S_KAFKA_VERSION": "4.1.1", "K2S_KAFKA_LINGER_MS": "5"})
    assert s.kafka == {"linger.ms": "5"}


def test_every_k2s_name_the_repository_uses_is_known():
    """A name a script, test or build reads must not draw the warning: grep for them."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env_reads = re.compile(r"""(?:environ(?:\.get)?\(?\[?|getenv\(|\$\{?|export |env\[)["']?(K2S_[A-Z0-9_]+)""")
    names = set()
    for folder in ("scripts", "tests", "bench", "src", ".ci"):
        for path in (repo / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".rb") and "egg-info" not in str(path):
                names |= set(env_reads.findall(path.read_text(errors="replace")))
    names |= set(re.findall(r"K2S_[A-Z0-9_]+(?==)", (repo / "setup.py").read_text()))
    assert names, "the pattern finds nothing: fix the test"
    assert config.unknown_names({n: "" for n in names}) == []


# --- preflight: librdkafka reads the Kafka settings of every role, in a child ----------

def _preflight(env):
    from kafka2sidekiq import preflight

    preflight.check(config.load(env=env), env)


def test_preflight_passes_on_the_defaults():
    _preflight({})
    _preflight({"K2S_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "K2S_KAFKA_SASL_MECHANISM": "PLAIN",
                "K2S_KAFKA_SASL_USERNAME": "u", "K2S_KAFKA_SASL_PASSWORD": "p", "K2S_KAFKA_LINGER_MS": "10"})


def test_preflight_creates_no_kafka_client_here():
    import subprocess
    import sys

    code = ("import sys; from kafka2sidekiq import config, preflight; preflight.check(config.load(env={}), {}); "
            "print('confluent_kafka' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("env,message", [
    ({"K2S_KAFKA_NOT_A_SETTING": "1"},
     "K2S_KAFKA_NOT_A_SETTING='1' (librdkafka not.a.setting) is not valid: "
     "No such configuration property: \"not.a.setting\""),
    ({"K2S_KAFKA_SECURITY_PROTOCOL": "nonsense"},
     "K2S_KAFKA_SECURITY_PROTOCOL='nonsense' (librdkafka security.protocol) is not valid: "
     "Invalid value \"nonsense\" for configuration property \"security.protocol\""),
    ({"K2S_KAFKA_AUTO_OFFSET_RESET": "sometime"},  # worker consumer
     "K2S_KAFKA_AUTO_OFFSET_RESET='sometime' (librdkafka auto.offset.reset) is not valid"),
    ({"K2S_KAFKA_ACKS": "1"},  # the dead-letter producer is idempotent
     "K2S_KAFKA_ACKS='1' (librdkafka acks) is not valid: Failed to create producer: `acks` must be set to `all`"),
    ({"K2S_SESSION_TIMEOUT_MS": "999999999"},  # a bridge setting librdkafka bounds
     "K2S_SESSION_TIMEOUT_MS='999999999' (librdkafka session.timeout.ms) is not valid"),
    ({"K2S_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "K2S_KAFKA_SASL_MECHANISM": "PLAIN"},
     "K2S_KAFKA_SASL_USERNAME, K2S_KAFKA_SASL_PASSWORD: librdkafka refused the settings of the coordinator "
     "consumer: Failed to create consumer: sasl.username and sasl.password must be set"),
])
def test_preflight_names_the_variable_the_key_and_the_reason(env, message):
    with pytest.raises(config.ConfigError) as err:
        _preflight(env)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_preflight_keeps_the_spelling_of_the_variable():
    with pytest.raises(config.ConfigError, match="^K2S_KAFKA_security_protocol='nonsense' "):
        _preflight({"K2S_KAFKA_security_protocol": "nonsense"})


def test_preflight_does_not_repeat_a_secret():
    with pytest.raises(config.ConfigError) as err:
        _preflight({"K2S_KAFKA_SASL_PASSWORD": "hunter2", "K2S_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "K2S_KAFKA_SASL_MECHANISM": "PLAIN"})
    assert "hunter2" not in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        _preflight({"K2S_KAFKA_SSL_KEY_PASSWORD": "hunter2", "K2S_KAFKA_NO_SUCH": "x"})
    assert "hunter2" not in str(err.value)


def test_preflight_is_bounded_in_time(monkeypatch):
    """A child that never answers is killed at the deadline: the probe fails, it never hangs."""
    import time

    from kafka2sidekiq import preflight

    monkeypatch.setattr(preflight, "probe", lambda settings, env: time.sleep(60))
    started = time.monotonic()
    with pytest.raises(config.ConfigError, match="did not finish reading the Kafka settings within 1 s"):
        preflight.check(config.load(env={}), {}, timeout=1.0)
    assert time.monotonic() - started < 5


def test_preflight_reports_a_child_that_crashed(monkeypatch):
    import os
    import signal

    from kafka2sidekiq import preflight

    monkeypatch.setattr(preflight, "probe", lambda settings, env: os.kill(os.getpid(), signal.SIGABRT))
    with pytest.raises(config.ConfigError, match=r"librdkafka failed while reading the Kafka settings \(signal SIGABRT\)"):
        preflight.check(config.load(env={}), {}, timeout=5.0)


def test_performed_mode_gives_origin_jids_unless_told_and_always_the_origin_key():
    performed = config.load(env={"K2S_COMMIT_ON": "performed"})
    assert performed.jid_mode == "origin" and performed.encoder_options().add_origin
    assert config.load(env={"K2S_COMMIT_ON": "performed", "K2S_JID_MODE": "random"}).jid_mode == "random"
    pushed = config.load(env={})
    assert pushed.commit_on == "pushed" and pushed.jid_mode == "random" and not pushed.encoder_options().add_origin
    with pytest.raises(config.ConfigError, match="K2S_COMMIT_ON='done' is not valid"):
        config.load(env={"K2S_COMMIT_ON": "done"})


def test_kip848_coordinator_sends_nothing_librdkafka_refuses_with_it():
    from kafka2sidekiq.coordinator import consumer_config

    classic = consumer_config(config.load(env={}))
    assert classic["partition.assignment.strategy"] == "cooperative-sticky" and "session.timeout.ms" in classic
    kip848 = consumer_config(config.load(env={"K2S_KAFKA_GROUP_PROTOCOL": "consumer"}))
    assert kip848["group.protocol"] == "consumer" and kip848["group.instance.id"]
    refused = {"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"}
    assert not refused & set(kip848)
