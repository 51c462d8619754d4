"""Outcomes: events from journey engines, stored once each and counted into the statistics.

- `ingest.py`: the service. Sets aside events stored before, attributes each new one to the
  assignment it follows (or stores it unattributed with its reason) and hands the batch over.
- `store.py`: the SQL. The look-ups attribution needs (stored event ids, assignments,
  experiment keys) and the write transaction: insert the events, add the attributed ones to
  each unit's total, add the change of those totals to the arms' statistics.
- How an event is counted (a binary metric converts once) is experiments/statistics/counting.py;
  the write runs through the group-commit writer (experiments/storage/writer.py).

One way through: request → ingest (attribution) → store (one transaction) → unit_metric and
arm_stats, which the read side and experiments/statistics/audit.py read.
"""
