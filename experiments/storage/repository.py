"""Loading experiments: the one place that finds an experiment by its key, or lists them.

Every service that needs an experiment row (with its variants, segments and metrics, loaded
together) reads it through here, so that "no such experiment" is one error everywhere.
"""

from sqlalchemy import func
from sqlmodel import Session, select

from experiments.errors import NotFound
from experiments.storage.tables import Experiment


def get_experiment(*, session: Session, key: str) -> Experiment:
    experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
    if experiment is None:
        raise NotFound(f"No experiment with key '{key}'.")
    return experiment


def list_experiments(
    *, session: Session, status: str | None = None, offset: int = 0, limit: int = 100
) -> tuple[list[Experiment], int]:
    """Experiments, newest first, optionally of one status; with the total count."""
    query = select(Experiment)
    count = select(func.count()).select_from(Experiment)
    if status is not None:
        query = query.where(Experiment.status == status)
        count = count.where(Experiment.status == status)
    query = query.order_by(Experiment.created_at.desc(), Experiment.id.desc())
    items = list(session.exec(query.offset(offset).limit(limit)))
    return items, session.exec(count).one()
