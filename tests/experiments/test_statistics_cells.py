"""The arm-statistics read model on stored rows: the layout of periods × segments × arms with
each cell's weights, a metric's cells, the cuts per segment and for `all`, the counts the
PyMC models and the bandit take; on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

from experiments.lifecycle import start_experiment
from experiments.statistics.cells import (
    cell_view,
    period_starts,
    primary_variant_rows,
    prior_arms,
    read_cells,
    read_layout,
    segment_variant_counts,
)
from experiments.storage.repository import get_experiment
from tests.utils.arm_stats import open_period, store_arm_stats
from tests.utils.factories import make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECOND_WEIGHTS = {"newcomers": {"morning-push": 0.2, "evening-email": 0.8}}
# (period, segment, arm): (units, conversions), on the primary metric.
ROWS = {
    (1, "newcomers", "morning-push"): (10, 1),
    (1, "other", "evening-email"): (20, 4),
    (2, "newcomers", "evening-email"): (30, 9),
    (2, "other", "(holdout)"): (5, 0),
    (2, "removed-segment", "morning-push"): (99, 99),
}


def stored_experiment(database):
    """onboarding-nudge (two variants, a holdout, `newcomers` and `other`) with two periods,
    the second giving newcomers 20/80, and ROWS as its activations."""
    with database.session(write=True) as session:
        experiment = make_experiment(session)
        start_experiment(session=session, key=experiment.key, now=T0)
        open_period(session, experiment, 2, SECOND_WEIGHTS, T0 + timedelta(days=1))
        store_arm_stats(session, experiment, ROWS, ("activated",))
        session.commit()
        return experiment.id


def test_the_layout_gives_each_cell_its_weights_and_the_holdout_the_last_arm(database):
    stored_experiment(database)
    with database.session() as session:
        layout = read_layout(session, _experiment(session))
    assert layout.periods == [1, 2]
    assert layout.segments == ["newcomers", "other"]
    assert layout.arms == ["morning-push", "evening-email", "(holdout)"]
    assert (layout.control, layout.holdout, layout.variants) == (0, 2, 2)
    # Period 2 gave newcomers their own weights; `other` kept the declared split.
    assert layout.weights.tolist() == [[[0.5, 0.5], [0.5, 0.5]], [[0.2, 0.8], [0.5, 0.5]]]
    assert layout.priors is None


def test_cells_hold_each_row_at_its_place_and_leave_out_rows_outside_the_layout(database):
    stored_experiment(database)
    with database.session() as session:
        experiment = _experiment(session)
        layout = read_layout(session, experiment)
        cells = read_cells(session, experiment, layout, {"activated", "unsubscribed"})
    activated = cells["activated"]
    assert activated.units.shape == (2, 2, 3)
    assert activated.units.sum() == 65  # the removed segment's 99 are not counted
    assert activated.units[1, 0, 1] == 30 and activated.conversions[1, 0, 1] == 9
    assert cells["unsubscribed"].units.sum() == 0
    units, _, _, _, weights = cell_view(layout, activated, "newcomers")
    assert units.tolist() == [[10, 0, 0], [0, 30, 0]]
    assert weights.tolist() == [[0.5, 0.5], [0.2, 0.8]]
    units, *_ = cell_view(layout, activated, "all")
    assert units.shape == (4, 3) and units.sum() == 65


def test_the_pymc_counts_sum_periods_and_leave_out_the_holdout(database):
    stored_experiment(database)
    with database.session() as session:
        segments, variants, units, conversions = segment_variant_counts(
            session, _experiment(session), "activated"
        )
    assert (segments, variants) == (["newcomers", "other"], ["morning-push", "evening-email"])
    assert units.tolist() == [[10, 30], [0, 20]]
    assert conversions.tolist() == [[1, 9], [0, 4]]


def test_the_bandit_reads_the_primary_metrics_rows_without_the_holdout(database):
    experiment_id = stored_experiment(database)
    with database.session() as session:
        primary, rows = primary_variant_rows(session=session, experiment_id=experiment_id)
        begins = period_starts(session=session, experiment_id=experiment_id)
    assert primary == "activated"
    assert sorted((r.period, r.segment, r.variant, r.units) for r in rows) == [
        (1, "newcomers", "morning-push", 10),
        (1, "other", "evening-email", 20),
        (2, "newcomers", "evening-email", 30),
        (2, "removed-segment", "morning-push", 99),
    ]
    assert sorted(begins) == [1, 2]


def test_a_segment_the_learned_prior_has_not_seen_takes_alls_arms():
    priors = {
        "segments": {
            "all": {"arms": {"a": [2.0, 8.0], "b": [3.0, 7.0]}},
            "newcomers": {"arms": {"a": [1.0, 9.0], "b": [4.0, 6.0]}},
        }
    }
    assert prior_arms(priors, "newcomers", ["a", "b"]) == ([1.0, 4.0], [9.0, 6.0])
    assert prior_arms(priors, "other", ["a", "b"]) == ([2.0, 3.0], [8.0, 7.0])
    assert prior_arms(priors, "other", ["a", "c"]) is None
    assert prior_arms(None, "other", ["a"]) is None


def _experiment(session):
    return get_experiment(session=session, key="onboarding-nudge")
