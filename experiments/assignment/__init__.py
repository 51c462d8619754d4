"""Assignment: which variant a unit gets, one unit or a batch, through one path.

- `snapshot.py`: what assigning needs to know of an experiment (variants, segments, the
  current period's weights), read once and cached per process for a moment.
- `segmentation.py`: the unit's segment, the first rule its attributes match.
- `timing.py`: when to send (the variant's `send` instruction, the unit's time zone, quiet
  hours).
- `assign.py`: the service: segment, holdout, then the variant by hashing the unit into the
  period's cumulative weights (bandits/hashing.py); a due reweight is claimed on the way.
- `store.py`: the SQL: insert the new assignments, read back the stored ones, add the new units
  to their arms' statistics, inside the group-commit writer's transaction.

One way through: request → assign (with a snapshot) → store → `assignment` and `arm_stats`.
"""
