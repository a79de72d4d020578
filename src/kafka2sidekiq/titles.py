"""Process titles: what ``ps`` and ``top`` show for each process of the host, e.g.

    kafka2sidekiq supervisor [2 workers, quiet]
    kafka2sidekiq coordinator [sidekiq_out 0-7] joined
    kafka2sidekiq worker 1 [sidekiq_out 0,3,6] pushing

Set when the role, partitions or state change, never per batch: ``Title.set`` calls
setproctitle only when the text is different. setproctitle (not a write to
/proc/self/comm, which holds 15 bytes and is not what ``ps`` shows by default) rewrites
the command line the kernel reports for the process."""

from __future__ import annotations

from typing import Iterable

import setproctitle

NAME = "kafka2sidekiq"


def ranges(partitions: Iterable[int]) -> str:
    """[0, 1, 2, 3, 5] -> '0-3,5'; runs of three or more as a range."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(set(partitions)):
        if run and p != run[-1] + 1:
            out.append(_run(run))
            run = []
        run.append(p)
    if run:
        out.append(_run(run))
    return ",".join(out)


def _run(run: list[int]) -> str:
    return f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(map(str, run))


class Title:
    """The title of one process: ``kafka2sidekiq <role> [<detail>] <state>``."""

    def __init__(self, role: str, detail: str = "", state: str = "") -> None:
        self.role, self.detail, self.state = role, detail, state
        self.text = ""
        self.set()

    def set(self, detail: str | None = None, state: str | None = None) -> None:
        if detail is not None:
            self.detail = detail
        if state is not None:
            self.state = state
        text = " ".join(part for part in (NAME, self.role, f"[{self.detail}]" if self.detail else "", self.state)
                        if part)
        if text != self.text:
            self.text = text
            setproctitle.setproctitle(text)

    def partitions(self, topic: str, partitions: Iterable[int], state: str | None = None) -> None:
        parts = ranges(partitions)
        self.set(f"{topic} {parts}" if parts else f"{topic}: no partitions", state)
