"""The pages' read model: allocation history, units over time, analyses, list headlines."""

from datetime import UTC, datetime, timedelta

import pytest

from experiments import overview
from experiments.errors import NotFound
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import FACTORIAL, experiment_body

T0 = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)


def test_units_over_time_are_cumulative_per_arm_and_hour(client, keys, database):
    start(client, keys, experiment_body(holdout=0.2))
    for hour in range(3):
        units = [{"unit_id": f"h{hour}-{i}"} for i in range(50)]
        now = (T0 + timedelta(hours=hour)).isoformat()
        assign_batch(client, keys["admin"], "onboarding-nudge", units, now=now)
    with database.session() as session:
        found = overview.units_over_time(session=session, key="onboarding-nudge")
    assert found["step"] == "hour"
    assert found["times"] == ["2026-11-29 05:00", "2026-11-29 06:00", "2026-11-29 07:00"]
    assert set(found["units"]) == {"morning-push", "evening-email", "(holdout)"}
    assert sum(series[-1] for series in found["units"].values()) == 150
    for series in found["units"].values():
        assert series == sorted(series)


def test_units_over_time_of_a_long_experiment_are_daily(client, keys, database):
    start(client, keys, experiment_body())
    for day in (0, 5):
        now = (T0 + timedelta(days=day)).isoformat()
        assign_batch(client, keys["admin"], "onboarding-nudge", [{"unit_id": f"d{day}"}], now=now)
    with database.session() as session:
        found = overview.units_over_time(session=session, key="onboarding-nudge")
    assert found["step"] == "day"
    assert found["times"] == ["2026-11-29 00:00", "2026-12-04 00:00"]


def test_no_units_yet(client, keys, database):
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    with database.session() as session:
        assert overview.units_over_time(session=session, key="onboarding-nudge")["times"] == []
        history = overview.allocation_history(session=session, key="onboarding-nudge")
        assert history["periods"] == [] and history["weights"] == {}
        found = overview.find_experiments(session=session)
        assert overview.headline(session=session, experiment=found[0][0])["units"] == 0


def test_allocation_history_lists_each_periods_weights_per_segment(client, keys, database):
    body = experiment_body(FACTORIAL, bandit={"min_units_per_arm": 1})
    start(client, keys, body)
    assign_batch(client, keys["assign"], body["key"], [{"unit_id": f"u{i}"} for i in range(80)])
    assert (
        client.post(f"/v1/experiments/{body['key']}/reweight", headers=keys["manage"]).status_code
        == 200
    )
    with database.session() as session:
        history = overview.allocation_history(session=session, key=body["key"])
    assert history["periods"] == [1, 2]
    assert set(history["weights"]) == {"other"}
    for series in history["weights"]["other"].values():
        assert series[0] == pytest.approx(1 / 8) and len(series) == 2


def test_find_experiments_by_text_and_status(client, keys, database):
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    client.post("/v1/experiments", json=experiment_body(FACTORIAL), headers=keys["manage"])
    with database.session() as session:
        found, total = overview.find_experiments(session=session, text="Renewal")
        assert [e.key for e in found] == ["renewal-reminder"] and total == 1
        assert overview.find_experiments(session=session, status="running") == ([], 0)


def test_an_analysis_is_found_only_under_its_experiment(client, keys, database):
    start(client, keys, experiment_body())
    client.post(
        "/v1/experiments/onboarding-nudge/analyses",
        json={"method": "hierarchical"},
        headers=keys["manage"],
    )
    with database.session() as session:
        assert [j.id for j in overview.analysis_jobs(session=session, key="onboarding-nudge")] == [
            1
        ]
        assert overview.job_of_experiment(session=session, key="onboarding-nudge", job_id=1).id == 1
        with pytest.raises(NotFound):
            overview.job_of_experiment(session=session, key="onboarding-nudge", job_id=2)
