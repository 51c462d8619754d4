"""Helpers for assignment tests: starting experiments and calling the API in bulk."""

from sqlalchemy import update
from sqlmodel import Session, select

from experiments.storage.tables import ArmStats, Experiment


def start(client, keys, body) -> dict:
    response = client.post("/v1/experiments", json=body, headers=keys["manage"])
    assert response.status_code == 201, response.json
    response = client.post(f"/v1/experiments/{body['key']}/start", headers=keys["manage"])
    assert response.status_code == 200, response.json
    return response.json


def assign_batch(client, headers, experiment, units, **extra) -> list[dict]:
    """Assign many units, 10,000 a request; answers in order."""
    answers = []
    for start_at in range(0, len(units), 10_000):
        chunk = units[start_at : start_at + 10_000]
        response = client.post(
            "/v1/assignments/batch",
            json={"experiment": experiment, "units": chunk, **extra},
            headers=headers,
        )
        assert response.status_code == 200, response.json
        answers += response.json["assignments"]
    return answers


def set_conversions(session: Session, experiment: str, metric: str, rate_by_variant: dict) -> None:
    """Test setup until outcomes are ingested: mark a share of each arm's units converted."""
    experiment_id = session.exec(select(Experiment.id).where(Experiment.key == experiment)).one()
    rows = session.exec(
        select(ArmStats).where(ArmStats.experiment_id == experiment_id, ArmStats.metric == metric)
    ).all()
    for row in rows:
        rate = rate_by_variant.get(row.variant, 0.0)
        session.execute(
            update(ArmStats).where(ArmStats.id == row.id).values(conversions=int(row.units * rate))
        )
    session.commit()
