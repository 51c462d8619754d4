"""Assignment: which variant a unit gets, one unit or a batch, through one path.

- `assign.py`: the service: the unit's segment (experiments/segmentation.py), the holdout,
  then the variant by hashing the unit into the current period's cumulative weights
  (bandits/hashing.py), read from the experiment's snapshot (experiments/snapshot.py); a due
  reweight is claimed on the way (experiments/allocation/).
- `timing.py`: when to send (the variant's `send` instruction, the unit's time zone, quiet
  hours).
- `store.py`: the SQL: insert the new assignments, read back the stored ones, add the new units
  to their arms' statistics, inside the group-commit writer's transaction.

One way through: request → assign (with a snapshot) → store → `assignment` and `arm_stats`.
"""
