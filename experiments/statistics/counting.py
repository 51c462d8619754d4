"""How an event is counted: what one attributed outcome adds to its unit's total of a metric,
and what a change of that total adds to its arm's sufficient statistics.

- A binary metric converts a unit once. Each positive event adds 1 to the unit's total (any
  number of them means "converted"); the arm counts the unit once, as a 0/1 value, when its
  total first turns positive: conversions, sum and sum of squares each + 1.
- A continuous metric sums the unit's values. The arm counts the unit in `conversions` (units
  with any event) at its first event; its sum and sum of squares move by the change of the
  unit's total and of that total's square.
- An assignment adds its unit to `units` of every metric of its arm, whatever it does later.

Pure Python, no SQL. The hot path (experiments/outcomes/store.py) applies it to the totals the
database hands back as events arrive; the audit and rebuild (experiments/statistics/audit.py)
to totals recomputed from raw rows, as if each unit's events had all arrived at once. Both
apply it once per event or per unit, so each rule is a few operations.
"""


def event_amount(binary: bool, value: float) -> float:
    """What one event adds to its unit's total: 1 if positive else 0 for a binary metric, the
    value itself for a continuous one."""
    return (1.0 if value > 0 else 0.0) if binary else value


def unit_total(binary: bool, value_sum: float, positive_events: int) -> float:
    """A unit's total from the aggregates of its events (the sum of their `event_amount`s):
    the number of positive events for a binary metric, the sum of values for a continuous one.
    """
    return float(positive_events) if binary else float(value_sum)


def count_change(
    arm: list, binary: bool, old_total: float, new_total: float, old_events: int
) -> None:
    """Add to an arm's [conversions, sum, sum_squares] the change of one unit's total from
    `old_total` (after `old_events` events) to `new_total`."""
    if binary:
        if old_total <= 0 < new_total:  # converted now: counted once, as 0/1
            arm[0] += 1
            arm[1] += 1.0
            arm[2] += 1.0
    else:
        if old_events == 0:
            arm[0] += 1
        arm[1] += new_total - old_total
        arm[2] += new_total * new_total - old_total * old_total
