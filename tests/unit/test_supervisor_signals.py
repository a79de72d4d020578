"""Signals go through the supervisor's queue and change only its state (no processes)."""

import signal
import time

import pytest

from kafka2sidekiq import config, exits
from kafka2sidekiq.supervisor import EXIT_CRASHLOOP, EXIT_OK, Child, Supervisor


@pytest.fixture
def supervisor(monkeypatch):
    sup = Supervisor(config.load(env={"K2S_WORKERS": "2"}))
    spawned = []
    monkeypatch.setattr(sup, "spawn", spawned.append)
    sup.spawned = spawned
    return sup


def dispatch(sup, *signals):
    sup.signals.extend(signals)
    sup.dispatch_signals()


def test_term_is_graceful_and_a_second_term_is_fast(supervisor):
    dispatch(supervisor, signal.SIGTERM)
    assert supervisor.stopping == "graceful"
    dispatch(supervisor, signal.SIGTERM)
    assert supervisor.stopping == "fast"


def test_int_behaves_like_term_and_quit_is_fast(supervisor):
    dispatch(supervisor, signal.SIGINT)
    assert supervisor.stopping == "graceful"
    dispatch(supervisor, signal.SIGQUIT)
    assert supervisor.stopping == "fast"


def test_ttin_and_ttou_resize_and_replan(supervisor):
    supervisor.owned = set(range(6))
    dispatch(supervisor, signal.SIGTTIN)
    assert supervisor.workers == 3 and supervisor.spawned == [2]
    assert [len(v) for v in supervisor.plan.values()] == [2, 2, 2]
    dispatch(supervisor, signal.SIGTTOU, signal.SIGTTOU, signal.SIGTTOU)
    assert supervisor.workers == 1  # never below one
    assert supervisor.plan == {0: [0, 1, 2, 3, 4, 5]}


def test_tstp_is_quiet_and_resizing_stops_when_stopping(supervisor):
    dispatch(supervisor, signal.SIGTSTP)
    assert supervisor.quiet and supervisor.stopping is None
    dispatch(supervisor, signal.SIGTERM, signal.SIGTTIN)
    assert supervisor.workers == 2 and supervisor.spawned == []


def test_sigchld_alone_changes_nothing(supervisor):
    dispatch(supervisor, signal.SIGCHLD)
    assert supervisor.stopping is None and supervisor.workers == 2


def test_only_deaths_before_boot_count_towards_the_crash_budget(supervisor):
    """A worker killed again and again after it booted (OOM killer, an operator) is always
    restarted at once; one that never boots backs off and ends the run at the budget."""
    for pid in range(100, 120):
        supervisor.on_exit(Child(0, pid, None, booted=True), -signal.SIGKILL)
        assert supervisor.respawn_at[0] <= time.monotonic() and supervisor.exit_code == EXIT_OK
    delays = []
    for pid in range(200, 205):
        supervisor.on_exit(Child(1, pid, None), exits.FAILED)
        delays.append(round(supervisor.respawn_at[1] - time.monotonic(), 1))
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and supervisor.exit_code == EXIT_CRASHLOOP
    assert "worker 1 failed at boot 5 times in a row" in supervisor.gave_up


def test_causes_outside_the_child_never_use_up_the_budget(supervisor):
    """Kafka or Redis away at boot, or SIGKILLs the supervisor did not send, to children
    that had not booted yet: started again with back-off (capped), without end."""
    delays = []
    for pid in range(300, 320):
        code = exits.UNAVAILABLE if pid % 2 else -signal.SIGKILL
        supervisor.on_exit(Child(0, pid, None), code)
        delays.append(supervisor.respawn_at[0] - time.monotonic())
    assert supervisor.exit_code == EXIT_OK and not supervisor.gave_up
    assert max(delays) <= 30.0 and delays[5] > delays[0]


def test_a_child_the_supervisor_killed_at_boot_counts(supervisor):
    """A child stuck at boot until the liveness check killed it cannot boot."""
    for pid in range(400, 405):
        child = Child(0, pid, None)
        child.sent = signal.SIGKILL
        supervisor.on_exit(child, -signal.SIGKILL)
    assert supervisor.exit_code == EXIT_CRASHLOOP


def test_a_fatal_boot_error_ends_with_exit_3_and_names_the_cause(supervisor):
    for pid in range(500, 505):
        supervisor.last_error[0] = "Redis at redis://127.0.0.1:1/0 refused the credentials: WRONGPASS"
        supervisor.on_exit(Child(0, pid, None), exits.BOOT)
    assert supervisor.exit_code == exits.BOOT
    assert "refused the credentials" in supervisor.gave_up and "K2S_CRASH_BUDGET=5" in supervisor.gave_up



def stop_messages(env: dict, sig: int) -> list[str]:
    """What the coordinator is told when the supervisor stops on ``sig`` (its workers gone)."""
    from kafka2sidekiq import channel
    from kafka2sidekiq.supervisor import COORDINATOR

    sup = Supervisor(config.load(env=env))
    parent, child = channel.pair()
    with parent, child:
        sup.children[COORDINATOR] = Child(COORDINATOR, 2**22 + 1, parent)  # no such pid: kill() is a no-op
        dispatch(sup, sig)
        assert sup.stopping == "graceful"
        sup.shutdown_step()
        return [type(m).__name__ for m in channel.receive(child)]


def test_usr1_or_leave_on_stop_makes_the_coordinator_leave_the_group():
    assert stop_messages({}, signal.SIGUSR1) == ["Commit", "Leave"]
    assert stop_messages({"K2S_LEAVE_ON_STOP": "true"}, signal.SIGTERM) == ["Commit", "Leave"]


def test_a_plain_stop_stays_in_the_group():
    assert stop_messages({}, signal.SIGTERM) == ["Commit"]


def test_a_child_held_off_by_an_outside_cause_after_boot_backs_off(supervisor):
    """Exit 75 after boot (e.g. a coordinator whose group.instance.id another member still
    holds): started again with growing back-off, never charged to the crash budget."""
    from kafka2sidekiq.supervisor import COORDINATOR

    delays = []
    for _ in range(4):
        supervisor.on_exit(Child(COORDINATOR, 1234, None, booted=True), exits.UNAVAILABLE)
        delays.append(round(supervisor.respawn_at[COORDINATOR] - time.monotonic(), 1))
    assert delays == [0.5, 1.0, 2.0, 4.0] and supervisor.failures == {} and not supervisor.gave_up
