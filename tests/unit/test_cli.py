"""The command line answers --help and --version for every command."""

import pytest

from kafka2sidekiq import __version__, cli


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
    assert cli.main(["check", "--batch-size", "0"]) == 78
    err = capsys.readouterr().err
    assert err.strip() == "kafka2sidekiq: --batch-size='0' is not valid: expected a whole number above 0"
