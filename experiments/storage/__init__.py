"""Storage: the database and what every room shares of it.

- `tables.py`: every table, one SQLModel class each.
- `database.py`: the engine and sessions (SQLite's WAL and write lock, PostgreSQL via psycopg).
- `migrate.py` and `migrations/`: the schema's history, applied by Alembic.
- `repository.py`: loading experiments by key, and listing them.
- `writer.py`: the group-commit writer, through which the hot paths (assignments, outcomes)
  run their write transactions on the driver connection; the statements themselves live
  beside their services, in experiments/assignment/store.py and experiments/outcomes/store.py.
- `arm_stats.py`: the one upsert by which both hot paths add to the arm statistics.

Data flows one way: a service (assignment, outcomes) prepares its rows, reads what it needs
through its `store.py`, and hands the writer one unit of work, a function of the store that
runs on the writer's transaction; nothing here imports a service.
"""
