"""The plan: which worker slot reads which of this host's partitions.

A pure function, so the supervisor's policy is testable without processes. Kafka gives
the host its partitions (through the coordinator); the plan spreads them over the
worker slots. A worker crash, a respawn or a change of worker count only changes this
plan, never the Kafka group.
"""

from __future__ import annotations

from typing import Iterable, Mapping


def plan(partitions: Iterable[int], slots: int,
         previous: Mapping[int, Iterable[int]] | None = None) -> dict[int, list[int]]:
    """Slot -> sorted partitions, for slots 0 .. slots-1.

    * balanced: slot sizes differ by at most one;
    * sticky: a partition stays in its previous slot whenever balance allows, so a
      change moves as few partitions as it can;
    * deterministic: the same inputs give the same plan.
    """
    if slots < 1:
        raise ValueError("at least one worker slot")
    wanted = sorted(set(partitions))
    base, extra = divmod(len(wanted), slots)
    present = set(wanted)
    kept: dict[int, list[int]] = {s: [] for s in range(slots)}
    spare: dict[int, list[int]] = {s: [] for s in range(slots)}  # could stay, if room
    placed: set[int] = set()
    for slot in range(slots):
        mine = sorted(p for p in (previous or {}).get(slot, ()) if p in present and p not in placed)
        kept[slot], spare[slot] = mine[:base], mine[base:]
        placed.update(kept[slot])
    # the slots that may hold base + 1: first those that already held more than base
    for slot in range(slots):
        if extra and spare[slot]:
            kept[slot].append(spare[slot][0])
            placed.add(spare[slot][0])
            extra -= 1
    # the rest of the base + 1 places go to the lowest slots; then fill in slot order
    target = {s: base + (len(kept[s]) > base) for s in range(slots)}
    for slot in range(slots):
        if extra and target[slot] == base:
            target[slot] += 1
            extra -= 1
    loose = [p for p in wanted if p not in placed]
    for slot in range(slots):
        take = target[slot] - len(kept[slot])
        kept[slot] += loose[:take]
        loose = loose[take:]
    assert not loose
    return {slot: sorted(parts) for slot, parts in kept.items()}


def moved(before: Mapping[int, Iterable[int]], after: Mapping[int, Iterable[int]]) -> int:
    """How many partitions changed slot (appearing or vanishing ones do not count)."""
    where_before = {p: s for s, ps in before.items() for p in ps}
    return sum(1 for s, ps in after.items() for p in ps if p in where_before and where_before[p] != s)
