"""The README's producer example, run as a user would (its own interpreter, the public
``from kafka2sidekiq import Job``), against the real broker: the job must reach Redis
through the bridge. Only the demo's address and topic are swapped for the test's."""

import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO, Bridge, bridge_env, queue_jobs, wait_for

README = REPO / "README.md"


def producer_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Producing jobs"):text.index("## What lands in Redis")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's producer example moved: update this test"
    return blocks[0]


def test_the_readme_producer_example_puts_its_job_in_redis(bootstrap, make_topic, redis_url, redis_client,
                                                            tmp_path):
    topic = make_topic(1)
    code = producer_snippet()
    assert '"127.0.0.1:19092"' in code and '"sidekiq_out"' in code
    (tmp_path / "producer.py").write_text(code.replace("127.0.0.1:19092", bootstrap)
                                          .replace('"sidekiq_out"', f'"{topic}"'))
    out = subprocess.run([sys.executable, "producer.py"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and "still in queue" not in out.stderr, out.stderr
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=1), "run")
    try:
        wait_for(lambda: redis_client.llen("queue:default") >= 1, 60, "the README's job in Redis")
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    (job,) = queue_jobs(redis_client)
    assert (job["class"], job["queue"], job["args"]) == ("HardJob", "default", [42, "two"])


def test_the_installed_job_proto_for_other_languages():
    out = subprocess.run([sys.executable, "-m", "kafka2sidekiq", "proto"], capture_output=True, text=True,
                         timeout=30)
    path = Path(out.stdout.strip())
    assert out.returncode == 0 and path.name == "job.proto"
    assert "package kafka2sidekiq.v1;" in path.read_text() and "message Job" in path.read_text()
