"""Process titles: ``ps`` tells the supervisor, the coordinator and each worker apart, with
their partitions and state."""

import re
import signal
import subprocess

import psutil

from helpers import Bridge, bridge_env, wait_for


def titles(bridge: Bridge) -> list[str]:
    """What ``ps`` shows for the bridge's processes: the supervisor first."""
    pids = [bridge.proc.pid, *(c.pid for c in psutil.Process(bridge.proc.pid).children())]
    out = subprocess.run(["ps", "-o", "args=", "-p", ",".join(map(str, pids))], capture_output=True, text=True)
    return sorted(line.strip() for line in out.stdout.splitlines())


def test_titles_say_role_partitions_and_state(bootstrap, make_topic, redis_url):
    topic = make_topic(4)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2), "run")
    try:
        def settled():
            shown = titles(bridge)
            return shown if len(shown) == 4 and all(t.endswith(("pushing", "joined", "workers]")) for t in shown) else None
        shown = wait_for(settled, 60, "the four processes to show their titles")
        coordinator, supervisor, *workers = shown
        assert supervisor == "kafka2sidekiq supervisor [2 workers]", shown
        assert coordinator == f"kafka2sidekiq coordinator [{topic} 0-3] joined", shown
        read = []
        for slot, title in enumerate(workers):
            m = re.fullmatch(rf"kafka2sidekiq worker {slot} \[{topic} (\d+(?:,\d+)*)\] pushing", title)
            assert m, shown
            read += map(int, m.group(1).split(","))
        assert sorted(read) == [0, 1, 2, 3], shown

        bridge.proc.send_signal(signal.SIGTSTP)
        quiet = wait_for(lambda: (t := titles(bridge)) and t[1].endswith("quiet]") and
                         all(w.endswith("] quiet") for w in t[2:]) and t, 10, "the titles to say quiet")
        assert quiet[1] == "kafka2sidekiq supervisor [2 workers, quiet]", quiet
    finally:
        code = bridge.stop()
    assert code == 0, bridge.output()[-3000:]
