"""The release's own files agree with the package: one version, its changelog entry, the
license that pyproject.toml declares."""

import re
import tomllib

from kafka2sidekiq import __version__
from helpers import REPO


def test_the_version_is_declared_once_and_the_changelog_has_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kafka2sidekiq.__version__"}
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == __version__, \
        f"CHANGELOG.md's newest release is {releases[:1]}, the package is {__version__}"


def test_the_license_file_is_the_declared_mit_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    text = (REPO / "LICENSE").read_text()
    assert project["project"]["license"] == "MIT" and text.startswith("MIT License")
    assert re.search(r"^Copyright \(c\) \d{4} the kafka2sidekiq authors$", text, re.M)
    assert project["project"]["license-files"] == ["LICENSE"]
