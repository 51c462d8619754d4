"""The domain and its storage: everything Kairos knows and does, below the HTTP edge.

The rooms, each answering one question (data flows down this list, never back up):
- `spec.py`, `bounds.py`, `vocabulary.py`, `errors.py`, `clock.py`: what an experiment is
  before it is stored, what a client may send, the domain's words, its errors, its clock.
- `lifecycle.py`, `workflows.py`, `keys.py`: creating experiments and moving them through their
  states (a workflow is one transaction a view calls); API keys.
- `snapshot.py`, `segmentation.py`: what the hot paths know of an experiment, cached per
  process (shared by assignment, outcomes and allocation); a unit's segment from its rules.
- `assignment/`: which variant a unit gets.
- `outcomes/`: events stored once each and attributed to their assignment.
- `statistics/`: how an event is counted (`counting.py`), the arm statistics read back
  (`cells.py`, `comparisons.py`) and audited (`audit.py`).
- `allocation/`: how a bandit's weights are chosen (`weights.py`) and the periods that carry
  them.
- `results.py`: what the results say, the answer to GET …/results.
- `learnings/`: what a learning is (`record.py`), publishing, searching, pooling evidence and
  learned priors.
- `analysis_jobs.py`: the PyMC analyses as jobs; `overview.py`: the pages' read models;
  `health.py`: the readiness check.
- `storage/`: tables, migrations, the database, the repository, the group-commit writer.

Nothing here imports Flask, marshmallow or api/; the maths is in bandits/ and analysis/.
"""
