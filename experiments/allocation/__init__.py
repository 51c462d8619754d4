"""Allocation: how a bandit's weights are chosen, and the periods that carry them.

Data flow one way: `reweight.py` (on schedule or on demand) reads the primary metric's counts
and the tripped guardrails from experiments/statistics/, hands them to `weights.py` (no
database: the policy the experiment's allocation names, and from counts the next period's
weights per segment) and opens the next period with `periods.py` (claim the due reweight, open
the period with a fresh hash seed, schedule the next). Assignment reads the current period's
weights from its snapshot (experiments/snapshot.py).
"""
