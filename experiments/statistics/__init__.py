"""The arm statistics: what the hot paths counted, read back for every statistic, and audited.

Data flow one way: `arm_stats` (kept up to date by the assignment and outcome writers) →
`cells.py`, the read model (the layout of periods × segments × arms and each cell's weights,
one or more metrics' cells, per-segment counts, the learned prior's arms, and the other rows
the bandit reads) → `comparisons.py` (each segment's arms compared, guardrail checks, tripped
guardrails, a metric's strata) and `bandit_counts.py` (the primary metric's successes, trials
and delay-aware trials per segment and variant) → their readers: experiments/results.py
(what the results say), experiments/allocation/ (how weights are chosen), the learnings
(what a learning is) and the PyMC analysis jobs.

`counting.py` is the rule by which the hot paths fill `arm_stats` and `unit_metric` (how an
event is counted: a binary metric converts a unit once). `audit.py` stands aside: it rebuilds
`arm_stats` and `unit_metric` from the raw rows, for an audit, a repair, or after a change of
the counting rules.
"""
