"""ruby/kafka2sidekiq_performed.rb in Debian's Sidekiq 6.4.1 against a real Redis: what
counts as finished (returned, or raised into Sidekiq's retry), what does not (a Sidekiq
shutdown, which puts the job back), and that a failed acknowledgement never fails the job."""

import shutil
import subprocess

import pytest

from helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")

SCRIPT = """
require "sidekiq"
require ENV.fetch("K2S_PERFORMED_RB")

middleware = Kafka2Sidekiq::Performed.new
bridged = ->(offset) { {"class" => "X", "args" => [], "k2s_origin" => "orders.v1/3/#{offset}"} }
middleware.call(nil, bridged.(41), "default") { :ok }
begin
  middleware.call(nil, bridged.(42), "default") { raise "boom" }
rescue RuntimeError
  puts "raised on"
end
begin
  middleware.call(nil, bridged.(43), "default") { raise Sidekiq::Shutdown }
rescue Sidekiq::Shutdown
  puts "shutdown raised on"
end
middleware.call(nil, {"class" => "X", "args" => []}, "default") { :ok }
puts "done"
"""


def run(redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ruby", "-e", SCRIPT], capture_output=True, text=True, timeout=60,
                          env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
                               "K2S_PERFORMED_RB": str(REPO / "ruby" / "kafka2sidekiq_performed.rb")})


def test_finished_means_returned_or_raised_into_the_retry_not_shut_down(redis_url, redis_client):
    out = run(redis_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["raised", "on", "shutdown", "raised", "on", "done"]
    assert redis_client.lrange("k2s:performed:orders.v1:3", 0, -1) == [b"41", b"42"]
    assert redis_client.keys("k2s:performed:*") == [b"k2s:performed:orders.v1:3"]


def test_a_failed_acknowledgement_does_not_fail_the_job():
    out = run("redis://127.0.0.1:1/0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "done"
    assert "kafka2sidekiq: could not acknowledge orders.v1/3/41" in out.stdout + out.stderr
