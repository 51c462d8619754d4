"""How an event is counted (experiments/statistics/counting.py): a binary metric converts a
unit once, a continuous one sums its values; the arm moves by the change of each unit's total."""

import pytest

from experiments.statistics.counting import count_change, event_amount, unit_total


def arm_after(binary: bool, values: list[float]) -> list:
    """An arm's [conversions, sum, sum_squares] after one unit's events arrive one by one, as
    the hot path counts them."""
    arm = [0, 0.0, 0.0]
    total = 0.0
    for events, value in enumerate(values):
        new_total = total + event_amount(binary, value)
        count_change(arm, binary, total, new_total, events)
        total = new_total
    return arm


def test_a_binary_event_counts_one_if_positive():
    assert [event_amount(True, v) for v in (1.0, 5.0, 0.0, -1.0)] == [1.0, 1.0, 0.0, 0.0]


def test_a_continuous_event_counts_its_value():
    assert [event_amount(False, v) for v in (2.5, 0.0, -1.0)] == [2.5, 0.0, -1.0]


def test_a_binary_metric_converts_a_unit_once():
    assert arm_after(True, [1.0]) == [1, 1.0, 1.0]
    assert arm_after(True, [0.0, 1.0, 1.0, 1.0]) == [1, 1.0, 1.0]
    assert arm_after(True, [0.0, -2.0]) == [0, 0.0, 0.0]


def test_a_continuous_metric_sums_the_units_values():
    assert arm_after(False, [3.0, 4.0]) == [1, 7.0, 49.0]
    assert arm_after(False, [0.0]) == [1, 0.0, 0.0]  # an event, though of nothing
    assert arm_after(False, [5.0, -5.0]) == [1, 0.0, 0.0]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("values", [[1.0], [0.0, 2.0, 3.5], [-1.0, 0.0], [4.0, -4.0, 0.5]])
def test_all_events_at_once_count_as_one_by_one(binary, values):
    """The audit counts a unit from its events' aggregates, as if all arrived at once: the same
    numbers as the hot path, event by event."""
    total = unit_total(binary, sum(values), sum(1 for v in values if v > 0))
    assert total == sum(event_amount(binary, v) for v in values)
    arm = [0, 0.0, 0.0]
    count_change(arm, binary, 0.0, total, 0)
    assert arm == pytest.approx(arm_after(binary, values))
