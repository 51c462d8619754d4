"""The domain and its storage: everything Kairos knows and does, below the HTTP edge.

The rooms, from the ground up; each imports only rooms listed before it (tests/test_layers.py,
ROOMS):
- `errors.py`, `clock.py`, `vocabulary.py`, `bounds.py`, `spec.py`: the domain's errors, its
  clock and words, what a client may send, what an experiment is before it is stored.
- `storage/`: tables, migrations, the database, the repository, the group-commit writer.
- `segmentation.py`, `snapshot.py`: a unit's segment from its rules; the experiment as the hot
  paths see it, cached per process (read by assignment, outcomes and allocation).
- `lifecycle.py`, `keys.py`, `health.py`: an experiment's states; API keys; readiness.
- `statistics/`: how an event is counted (`counting.py`), the arm statistics read back
  (`cells.py`), compared (`comparisons.py`) and shaped for the bandit (`bandit_counts.py`),
  and audited (`audit.py`).
- `results.py`: what the results say, the answer to GET …/results.
- `learnings/`: what a learning is (`record.py`), where its comparisons come from, publishing,
  searching (its SQL in `store.py`), pooling evidence and learned priors.
- `analysis_jobs.py`: the PyMC analyses as jobs.
- `allocation/`: how a bandit's weights are chosen (`weights.py`), the periods that carry
  them, and the reweight that ties them together.
- `outcomes/`: events stored once each and attributed to their assignment.
- `assignment/`: which variant a unit gets (claiming a due reweight on the way).
- `overview.py`: the pages' read models; `workflows.py`: the use cases a view calls that span
  rooms, one transaction each.

Nothing here imports Flask, marshmallow or api/; the maths is in bandits/ and analysis/.
"""
