"""The Sidekiq middleware (src/kafka2sidekiq/ruby/kafka2sidekiq_performed.rb): its own tests (ruby/test/test_performed.rb, minitest)
in Debian's Ruby and Sidekiq 6.4.1 against the test Redis."""

import re
import shutil
import subprocess

import pytest

from helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")


def test_the_middlewares_own_tests_pass(redis_url):
    out = subprocess.run(["ruby", str(REPO / "ruby" / "test" / "test_performed.rb")], capture_output=True,
                         text=True, timeout=120, env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"})
    summary = re.search(r"(\d+) runs, (\d+) assertions, (\d+) failures, (\d+) errors, (\d+) skips", out.stdout)
    assert out.returncode == 0 and summary, out.stdout[-3000:] + out.stderr[-3000:]
    runs, _, failures, errors, skips = map(int, summary.groups())
    assert (runs, failures, errors, skips) == (7, 0, 0, 0), out.stdout[-3000:]
