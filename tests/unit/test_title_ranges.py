"""The partitions of a process title, written short."""

from kafka2sidekiq.titles import ranges


def test_runs_of_three_or_more_become_ranges():
    assert ranges([]) == ""
    assert ranges([6, 0, 3]) == "0,3,6"
    assert ranges([0, 1]) == "0,1"
    assert ranges(range(8)) == "0-7"
    assert ranges([0, 1, 2, 3, 5, 7, 8, 9, 11, 12]) == "0-3,5,7-9,11,12"
