"""The supervisor: one per host. Forks the coordinator (the host's consumer-group member)
and the workers, keeps every child alive, and owns the plan of which worker reads which
of the host's partitions.

It never creates a Kafka client and never starts a thread (librdkafka is not fork-safe):
every client lives in the child that uses it. One loop, top to bottom:

    signals -> reap -> respawn -> read children -> limiter -> liveness -> commits -> shutdown

Signals are only recorded by their handlers; the loop dispatches them:
    TERM, INT   graceful: workers finish the batch in hand and report; the coordinator
                commits and leaves; SIGKILL for whatever is left at graceful_seconds
    2nd TERM/INT, QUIT   fast: SIGKILL the workers, commit what is known, stop
    USR1        graceful, and this host leaves the group for good: the other hosts take
                its partitions at once (K2S_LEAVE_ON_STOP makes every stop do this)
    TSTP        quiet: workers stop fetching (membership and partitions are kept)
    TTIN, TTOU  one worker more, one fewer

It also runs the host's limiter (limiter.py): a Redis poller whose verdict the workers
read from a shared page; and, with K2S_HTTP set, serves /metrics, /healthz and /readyz
from the same loop (metrics.py).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
import traceback
from dataclasses import dataclass, field

import psutil

from . import channel, exits
from .assignment import plan
from .channel import (Applied, Assign, Assigned, Booted, Commit, Fatal, Leave, Offsets, Quiet, Revoked, RevokeDone,
                      Stats, Watermarks)
from .config import Settings
from .limiter import Limiter, Page
from .metrics import HostMetrics, Server, partition_lag
from .titles import Title

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BOOT, EXIT_CRASHLOOP = exits.OK, exits.FAILED, exits.BOOT, exits.CRASHLOOP
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGTSTP, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGCHLD)
COORDINATOR = channel.MAX_SLOTS - 1  # its heartbeat slot; workers use 0 .. workers-1
STATS_SECONDS = 60.0
RSS_CHECK_SECONDS = 5.0
HANDOVER_SECONDS = 8.0  # the coordinator holds revoked partitions for up to 10 s


@dataclass
class Child:
    slot: int                 # worker slot, or COORDINATOR
    pid: int
    sock: object
    started: float = field(default_factory=time.monotonic)
    booted: bool = False      # a worker reached Redis and Kafka; the coordinator joined the group
    sent: int | None = None   # the signal the supervisor sent it, if any

    @property
    def role(self) -> str:
        return role_name(self.slot)


@dataclass
class Handover:
    """Partitions Kafka is taking from this host, not yet let go. The coordinator keeps
    them (and commits nothing for them) until every worker that read them has applied
    a plan without them, or died, or the deadline passed: only then is the offset it
    commits exactly what this host's Redis holds."""
    partitions: set[int]
    waiting: dict[int, int]   # worker slot -> the plan generation it must apply
    deadline: float


def role_of(slot: int) -> tuple[str, int | None]:
    """(role, worker slot) of a slot: the coordinator has none."""
    return ("coordinator", None) if slot == COORDINATOR else ("worker", slot)


def role_name(slot: int) -> str:
    role, n = role_of(slot)
    return role if n is None else f"{role} {n}"


class Supervisor:
    def __init__(self, settings: Settings, configure_child_logging=lambda role, slot: None) -> None:
        self.settings = settings
        self.workers = settings.workers
        self.configure_child_logging = configure_child_logging
        self.heartbeats = channel.Heartbeats()
        self.page = Page()
        self.limiter = Limiter(settings, self.page)
        self.children: dict[int, Child] = {}       # slot -> live child
        self.failures: dict[int, int] = {}         # slot -> boot failures in a row (the crash budget)
        self.unbooted: dict[int, int] = {}         # slot -> deaths before boot in a row (the back-off)
        self.respawn_at: dict[int, float] = {}     # slot -> when to start it again
        self.last_error: dict[int, str] = {}
        self.owned: set[int] = set()               # partitions Kafka gave this host
        self.plan: dict[int, list[int]] = {}
        self.generation = 0                        # of the plan; workers answer Applied(generation)
        self.sent_plan: dict[int, list[int]] = {}
        self.handover: Handover | None = None
        self.offsets: dict[int, int] = {}          # reported by workers, not yet committed
        self.pushed: dict[int, int] = {}           # performed mode: where this host's Redis ends, per partition
        self.signals: list[int] = []
        self.stopping: str | None = None           # "graceful" or "fast"
        self.leaving = settings.leave_on_stop      # at the end, leave the group for good
        self.deadline = 0.0
        self.coordinator_stopped = False
        self.quiet = False
        self.exit_code = EXIT_OK
        self.gave_up = ""                          # why the supervisor stopped on its own
        self.assigned = False                      # the coordinator has had its first assignment
        self.high: dict[int, int] = {}             # the broker's end offset per partition (the coordinator asks)
        self.in_redis: dict[int, int] = {}         # per partition, the offset before which all is in Redis
        self.broker_seen_at = time.monotonic()     # when the broker last answered the coordinator
        self.metrics = HostMetrics(self.limiter, self.processes, lambda: self.owned, self.lag,
                                   lambda: self.quiet, settings.encoder)
        self.server: Server | None = None
        self.title: Title | None = None            # set in run(): a Supervisor built in a test renames nothing
        self.committed_at = self.stats_at = self.rss_at = time.monotonic()

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        for sig in HANDLED:
            signal.signal(sig, lambda signum, frame: self.signals.append(signum))
        self.title = Title("supervisor")
        self.show_title()
        log.info("supervisor %d: %d worker(s), topic %s, group %s", os.getpid(), self.workers,
                 self.settings.topic, self.settings.group_id)
        if self.settings.http:
            host, port = self.settings.http
            try:
                self.server = Server(self.settings.http, {"/metrics": self.scrape, "/healthz": self.health,
                                                          "/readyz": self.readiness})
            except OSError as exc:
                log.error("supervisor: cannot serve K2S_HTTP=%s:%d: %s", host, port, exc.strerror or exc)
                return EXIT_FAILED
            log.info("supervisor: /metrics, /healthz and /readyz on http://%s:%d", host, port)
        self.spawn(COORDINATOR)
        for slot in range(self.workers):
            self.spawn(slot)
        while self.children or not self.stopping:
            self.dispatch_signals()
            self.show_title()  # a string compared each turn; setproctitle only on a change
            self.reap()
            if self.gave_up:
                self.stop("fast")
            self.respawn()
            self.read_children(wake_read)
            self.limiter.poll()
            self.metrics.tick()
            self.check_liveness()
            self.hand_over()
            self.forward_offsets()
            self.shutdown_step()
            self.log_stats()
            self.recycle_fat_workers()
        # Stopped: a signal now must not kill the process while the interpreter shuts
        # down (it restores the default handlers), turning exit 0 into "killed by TERM".
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        signal.set_wakeup_fd(-1)
        if self.server:
            self.server.close()
        if self.gave_up:
            log.error("supervisor %d: stopped (exit %d): %s", os.getpid(), self.exit_code, self.gave_up)
        else:
            log.info("supervisor %d: stopped (exit %d)", os.getpid(), self.exit_code)
        return self.exit_code

    # --- signals ---------------------------------------------------------------------------

    def show_title(self) -> None:
        if self.title:
            state = ", stopping" if self.stopping else ", quiet" if self.quiet else ""
            self.title.set(f"{self.workers} worker{'s' if self.workers != 1 else ''}{state}")

    def dispatch_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGCHLD:
                continue  # reap() runs every turn
            name = signal.Signals(sig).name
            log.info("supervisor: %s", name)
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.stop("fast" if self.stopping else "graceful")
            elif sig == signal.SIGQUIT:
                self.stop("fast")
            elif sig == signal.SIGUSR1:
                self.leaving = True
                self.stop("graceful")
            elif sig == signal.SIGTSTP:
                self.quiet = True
                for child in self.workers_alive():
                    channel.send(child.sock, Quiet())
            elif sig == signal.SIGTTIN and not self.stopping:
                self.resize(self.workers + 1)
            elif sig == signal.SIGTTOU and not self.stopping:
                self.resize(max(1, self.workers - 1))

    def stop(self, how: str) -> None:
        if self.stopping == "fast" or self.stopping == how:
            return
        self.stopping = how
        self.deadline = time.monotonic() + (self.settings.graceful_seconds if how == "graceful" else 5)
        for child in self.workers_alive():
            self.kill(child, signal.SIGTERM if how == "graceful" else signal.SIGKILL)

    def resize(self, workers: int) -> None:
        log.info("supervisor: %d -> %d worker(s)", self.workers, workers)
        for slot in range(workers, self.workers):  # fewer: the highest slots leave
            if slot in self.children:
                self.kill(self.children[slot], signal.SIGTERM)
            self.respawn_at.pop(slot, None)
        old = self.workers
        self.workers = self.limiter.workers = workers
        for slot in range(old, workers):
            self.spawn(slot)
        self.replan()

    # --- children ----------------------------------------------------------------------------

    def spawn(self, slot: int) -> None:
        parent_end, child_end = channel.pair()
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)  # no handler runs half-forked
        pid = os.fork()
        if pid == 0:
            code = EXIT_FAILED
            try:
                parent_end.close()
                for other in self.children.values():
                    other.sock.close()
                if self.server:
                    self.server.close()
                code = self.child_main(slot, child_end)
            except SystemExit as exc:  # a worker told to stop in the middle of a retry
                code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
            except BaseException:  # noqa: BLE001 - a child never returns into the parent's loop
                traceback.print_exc()
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        child_end.close()
        self.children[slot] = Child(slot, pid, parent_end)
        self.heartbeats.beat(slot)
        log.info("supervisor: started %s (pid %d)", self.children[slot].role, pid)
        if slot != COORDINATOR and slot in self.plan:
            self.send_plan(slot, force=True)

    def child_main(self, slot: int, sock) -> int:
        """In the child: its own signal handlers, then the role's loop. Returns the exit code."""
        signal.set_wakeup_fd(-1)
        stopping: list[int] = []
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        for sig in (signal.SIGUSR1, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor; it decides
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        parent = os.getppid()
        self.configure_child_logging(*role_of(slot))
        title = Title(role_name(slot), state="booting")

        def should_stop() -> bool:
            return bool(stopping) or os.getppid() != parent  # an orphan leaves

        def beat() -> None:
            self.heartbeats.beat(slot)

        if slot == COORDINATOR:
            from . import coordinator
            return coordinator.main(self.settings, sock, beat, should_stop, title)
        from . import worker
        return worker.main(self.settings, sock, beat, should_stop, self.page, title)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children.values() if c.pid == pid), None)
            if child is None:
                continue
            del self.children[child.slot]
            self.read_child(child)  # its last words: final offsets and counters, a fatal error
            child.sock.close()
            if self.handover:  # what it pushed, it reported; it reads nothing more
                self.handover.waiting.pop(child.slot, None)
            code = os.waitstatus_to_exitcode(status)
            self.on_exit(child, code)
            if child.slot == COORDINATOR and not self.stopping and self.owned:
                # This host is no group member now, and the group may give its partitions to
                # another host: stop reading them until the next coordinator has joined.
                log.warning("supervisor: the workers stop reading until a coordinator has joined the group again")
                self.owned, self.handover = set(), None
                self.replan()
            if child.slot != COORDINATOR:
                self.metrics.exited(child.slot, restarted=child.slot in self.respawn_at)

    def on_exit(self, child: Child, code: int) -> None:
        """Start the slot again: at once when the child had booted, else with back-off.

        The crash budget stops a child that cannot boot, and only that: it counts boot
        failures of the child's own (it reported a fatal boot error, or died of an error
        before it booted, or hung at boot until the supervisor killed it). A child killed
        by a signal the supervisor did not send (an operator, the OOM killer) and one
        that found Kafka or Redis unreachable, or its group.instance.id held by another
        member (exits.UNAVAILABLE, before or after it booted), is started again with
        back-off for as long as it takes: the cause is outside, and may pass."""
        how = f"exit {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if self.stopping or (child.slot != COORDINATOR and child.slot >= self.workers):
            log.info("supervisor: %s (pid %d) stopped: %s", child.role, child.pid, how)
            return
        cause = self.last_error.pop(child.slot, "")
        if (child.booted and code != exits.UNAVAILABLE) or code == exits.OK:
            self.unbooted.pop(child.slot, None)
            delay = 0.0
        else:
            deaths = self.unbooted[child.slot] = self.unbooted.get(child.slot, 0) + 1
            delay = min(30.0, 0.5 * 2 ** (deaths - 1))
            own = code == exits.BOOT or (code > 0 and code != exits.UNAVAILABLE) or (code < 0 and -code == child.sent)
            if own:
                failures = self.failures[child.slot] = self.failures.get(child.slot, 0) + 1
                if failures >= self.settings.crash_budget:
                    self.give_up(exits.BOOT if code == exits.BOOT else exits.CRASHLOOP,
                                 f"{child.role} failed at boot {failures} times in a row "
                                 f"(K2S_CRASH_BUDGET={self.settings.crash_budget}); last: {cause or how}")
                    return
        log.warning("supervisor: %s (pid %d) died: %s%s; restarting in %.1fs", child.role, child.pid, how,
                    f" ({cause})" if cause else "", delay)
        self.respawn_at[child.slot] = time.monotonic() + delay

    def give_up(self, code: int, why: str) -> None:
        log.error("supervisor: %s; giving up", why)
        self.exit_code, self.gave_up = code, why

    def kill(self, child: Child, sig: int) -> None:
        """Signal a child, remembering it: the exit it causes is not the child's fault."""
        child.sent = sig
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:  # it died already; reap() takes it
            pass

    def respawn(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for slot, when in list(self.respawn_at.items()):
            if when <= now:
                del self.respawn_at[slot]
                self.spawn(slot)

    def workers_alive(self) -> list[Child]:
        return [c for s, c in self.children.items() if s != COORDINATOR]

    # --- messages ------------------------------------------------------------------------------

    def read_children(self, wake_read: int) -> None:
        socks = {c.sock: c for c in self.children.values()}
        server = [self.server] if self.server else []
        ready, _, _ = select.select([wake_read, *server, *socks], [], [], 0.2)
        if wake_read in ready:
            os.read(wake_read, 512)
        if server and self.server in ready:
            self.server.handle()
        for sock in ready:
            if sock in socks:
                self.read_child(socks[sock])

    def read_child(self, child: Child) -> None:
        for message in channel.receive(child.sock):
            if isinstance(message, Offsets):
                self.offsets.update(message.offsets)
                self.note_in_redis(message.offsets)
                if message.pushed is not None:  # performed mode: commits lag what Redis holds
                    self.pushed.update(message.pushed)
                    self.note_in_redis(message.pushed)
            elif isinstance(message, Applied):
                self.offsets.update(message.released)
                self.note_in_redis(message.released)
                if self.handover and self.handover.waiting.get(child.slot, message.generation) <= message.generation:
                    self.handover.waiting.pop(child.slot, None)
            elif isinstance(message, Stats):
                self.metrics.update(child.slot, message.stats)
                self.note_in_redis({int(p): o for p, o in message.stats.get("position", {}).items()})
            elif isinstance(message, Watermarks):
                if not message.error:
                    self.broker_seen_at = time.monotonic()
                    self.high.update(message.high)
                    self.note_in_redis(message.committed)
            elif isinstance(message, Booted):
                if child.slot == COORDINATOR:
                    self.broker_seen_at = time.monotonic()
                child.booted = True
                self.failures.pop(child.slot, None)
                self.unbooted.pop(child.slot, None)
            elif isinstance(message, Fatal):
                self.last_error[child.slot] = message.reason
                log.error("supervisor: %s: %s", child.role, message.reason)
            elif isinstance(message, Assigned):
                self.assigned = True
                self.broker_seen_at = time.monotonic()
                self.owned = set(message.partitions)
                self.replan()
            elif isinstance(message, Revoked):
                self.revoke(set(message.partitions), message.lost)
            else:
                log.error("supervisor: %s sent %r, which only the supervisor sends", child.role, message)

    def revoke(self, gone: set[int], lost: bool) -> None:
        """Take partitions from the workers. Revoked alive, they are handed over: the
        coordinator waits for hand_over() to tell it what to commit for them. Lost (the
        session expired), another host may be reading them already: nothing is committed."""
        readers = [slot for slot, parts in self.sent_plan.items() if slot in self.children and gone & set(parts)]
        self.owned -= gone
        self.replan()
        if lost:
            self.forget(gone)
        else:
            self.handover = Handover(gone, {slot: self.generation for slot in readers},
                                     time.monotonic() + HANDOVER_SECONDS)
            self.hand_over()

    def hand_over(self) -> None:
        """Once the workers have let the revoked partitions go, send the coordinator the
        offsets to commit for them (RevokeDone); at the deadline, what is known."""
        handover, coordinator = self.handover, self.children.get(COORDINATOR)
        if handover is None or (handover.waiting and time.monotonic() < handover.deadline):
            return
        if handover.waiting:
            log.warning("supervisor: %s still reading revoked partition(s) %s after %.0fs; committing what "
                        "they reported (jobs they push from here on may be pushed again by the next owner)",
                        ", ".join(role_name(s) for s in sorted(handover.waiting)), sorted(handover.partitions),
                        HANDOVER_SECONDS)
        handed = {p: o for p, o in self.offsets.items() if p in handover.partitions}
        if coordinator:
            channel.send(coordinator.sock, RevokeDone(handed))
        self.forget(handover.partitions)
        self.handover = None

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of partitions no longer this host's."""
        self.offsets = {p: o for p, o in self.offsets.items() if p not in partitions}
        self.pushed = {p: o for p, o in self.pushed.items() if p not in partitions}
        self.high = {p: o for p, o in self.high.items() if p not in partitions}
        self.in_redis = {p: o for p, o in self.in_redis.items() if p not in partitions}

    def note_in_redis(self, offsets: dict[int, int]) -> None:
        """What a worker pushed (or the group committed): all before it is in Redis."""
        for p, o in offsets.items():
            if o > self.in_redis.get(p, -1):
                self.in_redis[p] = o

    def lag(self) -> dict[int, int]:
        return partition_lag(self.owned, self.high, self.in_redis)

    def replan(self) -> None:
        self.plan = plan(self.owned, self.workers, self.plan)
        self.generation += 1
        for slot in range(self.workers):
            self.send_plan(slot)

    def send_plan(self, slot: int, force: bool = False) -> None:
        child = self.children.get(slot)
        wanted = self.plan.get(slot, [])
        if child and (force or self.sent_plan.get(slot) != wanted):
            if channel.send(child.sock, Assign(wanted, self.generation, self.quiet)):
                self.sent_plan[slot] = wanted

    def forward_offsets(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        coordinator = self.children.get(COORDINATOR)
        if (coordinator and coordinator.booted and self.offsets  # booted: joined, owns what it commits
                and now - self.committed_at >= self.settings.commit_interval_ms / 1000):
            if channel.send(coordinator.sock, Commit(self.offsets, now=True)):
                self.offsets = {}
            self.committed_at = now

    # --- liveness and shutdown ------------------------------------------------------------------

    def check_liveness(self) -> None:
        limit = self.settings.liveness_seconds
        now = time.monotonic()
        for child in list(self.children.values()):
            if now - self.heartbeats.last(child.slot) > limit and now - child.started > limit:
                log.error("supervisor: %s (pid %d) made no progress for %.0fs (limit %ds): killing it",
                          child.role, child.pid, now - self.heartbeats.last(child.slot), limit)
                self.kill(child, signal.SIGKILL)
                child.started = now  # once; reap() restarts it

    def shutdown_step(self) -> None:
        if not self.stopping:
            return
        coordinator = self.children.get(COORDINATOR)
        if coordinator and not self.workers_alive() and not self.coordinator_stopped:
            # the workers have reported their last offsets: commit them, then stop (and
            # leave the group, when this host is leaving for good)
            if self.leaving:  # the next owner starts where this Redis ends (performed mode too)
                channel.send(coordinator.sock, Commit({**self.offsets, **self.pushed}))
                channel.send(coordinator.sock, Leave())
            else:  # in place: back at the ledger; if this host never returns, at what Sidekiq finished
                channel.send(coordinator.sock, Commit(self.offsets))
            self.offsets = {}
            self.kill(coordinator, signal.SIGTERM)
            self.coordinator_stopped = True
        if time.monotonic() > self.deadline and self.children:
            for child in self.children.values():
                log.error("supervisor: %s (pid %d) still running at the deadline: SIGKILL",
                          child.role, child.pid)
                self.kill(child, signal.SIGKILL)
            self.exit_code = self.exit_code or EXIT_FAILED
            self.deadline = float("inf")

    # --- metrics and health ----------------------------------------------------------------------

    def processes(self) -> list[tuple[str, str, psutil.Process]]:
        """(role, slot, process) of the supervisor and each child, for the metrics."""
        out = [("supervisor", "", psutil.Process())]
        for child in self.children.values():
            role, n = role_of(child.slot)
            try:
                out.append((role, "" if n is None else str(n), psutil.Process(child.pid)))
            except psutil.Error:
                continue
        return out

    def scrape(self) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition()

    def health(self) -> tuple[int, str, bytes]:
        """Every slot has a live child whose loop turned within stall_seconds."""
        now, problems = time.monotonic(), []
        for slot in (COORDINATOR, *range(self.workers)):
            name = role_name(slot)
            child = self.children.get(slot)
            if child is None:
                problems.append(f"{name}: not running")
            elif now - self.heartbeats.last(slot) > self.settings.stall_seconds:
                problems.append(f"{name} (pid {child.pid}): no progress for "
                                f"{now - self.heartbeats.last(slot):.0f}s")
        return _verdict(problems)

    def readiness(self) -> tuple[int, str, bytes]:
        """Kafka has given the host partitions and answers, every worker has booted, and
        Redis answers the limiter. A limiter pause is not a reason to be unready."""
        problems = []
        if not self.assigned:
            problems.append("no partition assignment from Kafka yet")
        elif not self.owned:
            problems.append("this host holds no partition of the topic")
        silent, bound = time.monotonic() - self.broker_seen_at, self.settings.broker_timeout_seconds
        if self.assigned and silent > bound:
            problems.append(f"Kafka has not answered for {silent:.0f}s (K2S_BROKER_TIMEOUT_SECONDS={bound})")
        booted = {slot for slot, child in self.children.items() if child.booted}
        problems += [f"worker {slot}: not booted" for slot in range(self.workers) if slot not in booted]
        if self.limiter.failing or not self.limiter.polled_at:
            problems.append("Redis does not answer")
        return _verdict(problems)

    def log_stats(self) -> None:
        now = time.monotonic()
        if now - self.stats_at < STATS_SECONDS:
            return
        self.stats_at = now
        for child in self.children.values():
            try:
                proc = psutil.Process(child.pid)
                cpu = proc.cpu_times()
                log.info("supervisor: %s pid %d rss %.0f MiB cpu %.1fs", child.role, child.pid,
                         proc.memory_info().rss / 2**20, cpu.user + cpu.system)
            except psutil.Error:
                pass


    def recycle_fat_workers(self) -> None:
        """With max_worker_rss set, a worker above it finishes its batch and is replaced."""
        limit, now = self.settings.max_worker_rss, time.monotonic()
        if not limit or self.stopping or now - self.rss_at < RSS_CHECK_SECONDS:
            return
        self.rss_at = now
        for child in self.workers_alive():
            try:
                rss = psutil.Process(child.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit:
                log.warning("supervisor: %s (pid %d) uses %.0f MiB, above %.0f MiB: recycling it",
                            child.role, child.pid, rss / 2**20, limit / 2**20)
                self.kill(child, signal.SIGTERM)


def _verdict(problems: list[str]) -> tuple[int, str, bytes]:
    body = "\n".join(problems) if problems else "ok"
    return (503 if problems else 200), "text/plain; charset=utf-8", (body + "\n").encode()
