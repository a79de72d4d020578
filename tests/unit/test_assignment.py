"""The plan: balanced, sticky, deterministic."""

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from conftest import SEED
from kafka2sidekiq.assignment import moved, plan


def sizes(p):
    return [len(v) for v in p.values()]


def test_spreads_evenly():
    assert plan(range(8), 3) == {0: [0, 1, 2], 1: [3, 4, 5], 2: [6, 7]}
    assert plan([], 2) == {0: [], 1: []}
    assert plan(range(2), 4) == {0: [0], 1: [1], 2: [], 3: []}


def test_a_new_worker_takes_only_what_balance_needs():
    before = plan(range(12), 3)
    after = plan(range(12), 4, before)
    assert sizes(after) == [3, 3, 3, 3]
    assert moved(before, after) == 3  # the fourth slot's three, nothing else


def test_a_removed_worker_gives_away_only_its_own():
    before = plan(range(12), 4)
    after = plan(range(12), 3, before)
    assert moved(before, after) == 3  # slot 3's, which must go somewhere
    assert all(set(before[s]) <= set(after[s]) for s in range(3))


def test_new_partitions_do_not_move_old_ones():
    before = plan(range(8), 4)
    after = plan(range(12), 4, before)
    assert moved(before, after) == 0 and sizes(after) == [3, 3, 3, 3]


def test_revoked_partitions_leave_the_rest_in_place():
    before = plan(range(16), 4)
    after = plan(range(8), 4, before)
    assert moved(before, after) <= 4 and sizes(after) == [2, 2, 2, 2]


@seed(SEED)
@settings(max_examples=500)
@given(parts=st.sets(st.integers(0, 200), max_size=64), slots=st.integers(1, 12),
       prev_parts=st.sets(st.integers(0, 200), max_size=64), prev_slots=st.integers(1, 12))
def test_properties(parts, slots, prev_parts, prev_slots):
    previous = plan(prev_parts, prev_slots)
    result = plan(parts, slots, previous)
    assert sorted(p for ps in result.values() for p in ps) == sorted(parts)  # each exactly once
    assert max(sizes(result)) - min(sizes(result)) <= 1                      # balanced
    assert result == plan(parts, slots, previous)                             # deterministic
    # sticky: a partition that could stay where it was moves only if its slot is gone
    # or was over its fair share
    cap = -(-len(parts) // slots)
    for s, ps in previous.items():
        if s < slots and len(set(ps) & parts) <= len(parts) // slots:
            assert set(ps) & parts <= set(result[s])
    assert all(len(ps) <= cap for ps in result.values())
