"""The command line answers --help and --version for every command; each command's help
lists only its settings; usage errors are one line; run logs its effective settings."""

import pytest

from kafka2sidekiq import __version__, cli, config


@pytest.mark.parametrize("command", [[], ["run"], ["worker"], ["check"], ["push"], ["produce"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: kafka2sidekiq" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out


def test_no_command_prints_usage(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    assert "COMMAND" in capsys.readouterr().out


def test_invalid_setting_exits_78_with_one_line(capsys):
    assert cli.main(["run", "--batch-size", "0"]) == 78
    err = capsys.readouterr().err
    assert err.strip() == "kafka2sidekiq: --batch-size='0' is not valid: expected a whole number above 0"


def help_of(command: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", list(cli.COMMAND_SETTINGS))
def test_help_lists_only_the_settings_of_the_command(command, capsys):
    text = help_of(command.split(), capsys)
    used = set(cli.COMMAND_SETTINGS[command])
    for s in config.SETTINGS:
        assert (s.flag + " ") in text or s.flag + "\n" in text if s.name in used else s.flag not in text, s.flag
    if command not in ("run", "worker"):  # the bridge itself: every setting of its own
        assert len(text.splitlines()) <= 100, f"{command} --help: {len(text.splitlines())} lines"


def test_produce_help_is_short(capsys):
    text = help_of(["produce"], capsys)
    assert len(text.splitlines()) <= 60 and "--batch-size" not in text and "--bootstrap-servers" in text


@pytest.mark.parametrize("argv, says", [
    (["push"], "kafka2sidekiq push: the following arguments are required: --class"),
    (["push", "--class", "A", "--jid", "XYZ"], "kafka2sidekiq push: argument --jid: 'XYZ': expected 24 lowercase hex"),
    (["produce", "--class", "A", "--retry", "maybe"], "kafka2sidekiq produce: argument --retry: 'maybe'"),
    (["produce", "--class", "A", "--at", "soon"], "kafka2sidekiq produce: argument --at: 'soon'"),
    (["push", "--class", "A", "--batch-size", "9"], "kafka2sidekiq push: unrecognized arguments: --batch-size 9"),
    (["nonsense"], "kafka2sidekiq: argument COMMAND: invalid choice: 'nonsense'"),
    (["dlq", "replay", "--to", "redis"], "kafka2sidekiq dlq replay: argument --to: 'redis'"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv, says, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(says), err


def test_global_flags_go_after_the_command_too():
    for argv in (["--log-format", "json", "push", "--class", "A"], ["push", "--class", "A", "--log-format", "json"],
                 ["dlq", "list", "--log-format", "json", "--debug"]):
        args, _ = cli.parser().parse_known_args(argv)
        assert args.log_format == "json", argv
    args, _ = cli.parser().parse_known_args(["--log-format", "json", "run"])
    assert args.log_format == "json"  # a later parser does not reset it


def test_effective_settings_hide_passwords_and_secrets():
    settings = config.load({"K2S_REDIS_URL": "redis://app:s3cret@10.0.0.1:6379/2", "K2S_LIMITER_HIGH": "512mb",
                            "K2S_HTTP": "127.0.0.1:9394", "K2S_QUEUE_ALLOW": "b,a",
                            "K2S_KAFKA_SASL_PASSWORD": "hunter2", "K2S_KAFKA_SASL_USERNAME": "k2s"})
    line = config.effective(settings)
    assert "s3cret" not in line and "hunter2" not in line
    for part in ("K2S_REDIS_URL=redis://app:***@10.0.0.1:6379/2", "K2S_KAFKA_SASL_PASSWORD=***",
                 "K2S_KAFKA_SASL_USERNAME=k2s", "K2S_LIMITER_HIGH=536870912", "K2S_LIMITER_LOW=70%",
                 "K2S_HTTP=127.0.0.1:9394", "K2S_QUEUE_ALLOW=a,b", "K2S_BATCH_SIZE=1000"):
        assert part in line.split(), part
    assert len(line.splitlines()) == 1
