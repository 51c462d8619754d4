"""The learnings service on stored statistics: a published learning says what the results say
for the same comparison, also where a drifting bandit makes the pooled counts say the opposite
(Simpson's paradox); on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import update

from analysis.summary import summarize_binary
from experiments import results as results_service
from experiments.learnings.publish import publish
from experiments.lifecycle import start_experiment
from experiments.statistics.comparisons import metric_strata
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, AnalysisJob, ArmStats, Experiment
from tests.utils.factories import FACTORIAL, make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BANDIT = {"update_every_seconds": 3600, "min_weight": 0.01, "min_units_per_arm": 10}
# Six days of a bandit: the base rate climbs from 2% to 10% while the bandit moves units to
# the challengers, which convert 20% less than the others within every day and segment.
# Newcomers convert twice as well as the others.
BASE_RATES = np.linspace(0.02, 0.10, 6)
CHALLENGER_SHARES = np.linspace(0.1, 0.9, 6)
SEGMENT_RATES = {"newcomers": 2.0, "other": 1.0}
UNITS_PER_DAY = 12_000
WORSE = 0.8


def drifting_bandit(
    session,
    experiment: Experiment,
    challengers: list[str],
    seed: int = 7,
    shares=CHALLENGER_SHARES,
):
    """Store six days of statistics in every segment of a started experiment: `challengers`
    (true rate × WORSE) share a growing part of the units (`shares`, day by day), the other
    variants the rest."""
    rng = np.random.default_rng(seed)
    arms = [v.key for v in experiment.variants]
    others = [a for a in arms if a not in challengers]
    segments = [s.key for s in experiment.segments] + ["other"]
    metrics = [m.key for m in experiment.metrics]
    for day, (base, share) in enumerate(zip(BASE_RATES, shares, strict=True)):
        weights = {a: share / len(challengers) for a in challengers}
        weights |= {a: (1 - share) / len(others) for a in others}
        number = day + 1
        by_segment = dict.fromkeys(segments, weights)
        if number == 1:
            session.execute(
                update(AllocationPeriod)
                .where(AllocationPeriod.experiment_id == experiment.id)
                .values(weights=by_segment)
            )
        else:
            session.add(
                AllocationPeriod(
                    experiment_id=experiment.id,
                    number=number,
                    seed=number,
                    weights=by_segment,
                    started_at=T0 + timedelta(days=day),
                )
            )
        for segment in segments:
            rate = base * SEGMENT_RATES[segment]
            for arm in arms:
                units = int(rng.binomial(UNITS_PER_DAY, weights[arm]))
                converted = int(rng.binomial(units, rate * (WORSE if arm in challengers else 1)))
                for metric in metrics:
                    session.add(
                        ArmStats(
                            experiment_id=experiment.id,
                            period=number,
                            segment=segment,
                            variant=arm,
                            metric=metric,
                            units=units,
                            conversions=converted if metric == metrics[0] else 0,
                        )
                    )
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment.id)
        .values(current_period=len(BASE_RATES))
    )
    session.commit()


def started(session, **overrides) -> Experiment:
    experiment = make_experiment(
        session, allocation="thompson", holdout=0.0, bandit=BANDIT, **overrides
    )
    start_experiment(session=session, key=experiment.key, now=T0)
    return experiment


def test_a_learning_is_the_results_row_where_pooling_would_flip_its_sign(database):
    with database.session(write=True) as session:
        drifting_bandit(session, started(session), ["evening-email"])
    with database.session(write=True) as session:
        key = "onboarding-nudge"
        experiment = get_experiment(session=session, key=key)
        published = publish(session=session, key=key)
        answer = results_service.experiment_results(session=session, key=key, metric="activated")
        found = {
            x.segment: (x.lift_mean, x.lift_low, x.lift_high, x.prob_better, x.verdict)
            for x in published
            if x.metric == "activated"
        }
        metric = next(m for m in experiment.metrics if m.key == "activated")
        _, strata = metric_strata(session=session, experiment=experiment, metric=metric)
    pooled = {s.segment: (s.units.sum(axis=0), s.conversions.sum(axis=0)) for s in strata}
    assert set(found) == {"all", "newcomers", "other"}
    for block in answer["segments"]:
        assert block["stratified"] is True
        row = next(r for r in block["variants"] if r["variant"] == "evening-email")
        mean, low, high, prob, verdict = found[block["segment"]]
        assert (mean, low, high) == (row["lift"]["mean"], *row["lift"]["ci"])
        assert prob == row["prob_beat_control"]
        # Within days the challenger is 20% worse, and both say so…
        assert high < 0 and prob < 0.001 and verdict == "loss"
        # …where its pooled counts (fed in the good days) would have called it a win.
        _, naive = summarize_binary(*pooled[block["segment"]], control=0)
        assert naive.lift.low > 0 and naive.prob_beat_control > 0.999


def test_a_factor_level_is_compared_within_days_too(database):
    with database.session(write=True) as session:
        experiment = started(session, base=FACTORIAL, key="renewal-reminder")
        evening = [v.key for v in experiment.variants if v.factors["timing"] == "evening"]
        drifting_bandit(session, experiment, evening)
    with database.session(write=True) as session:
        published = publish(session=session, key="renewal-reminder")
        answer = results_service.experiment_results(session=session, key="renewal-reminder")
        experiment = get_experiment(session=session, key="renewal-reminder")
        arms = [v.key for v in experiment.variants]
        _, strata = metric_strata(
            session=session, experiment=experiment, metric=experiment.metrics[0]
        )
    twins = [v.replace("timing=evening", "timing=morning") for v in evening]
    found = {(x.segment, x.factor, x.level): x for x in published if x.metric == "renewed"}
    rates = {
        r["variant"]: r["rate"]["mean"]
        for r in next(b for b in answer["segments"] if b["segment"] == "all")["variants"]
    }
    for segment in ("all", "other"):
        timing = found[(segment, "timing", "evening")]
        assert timing.lift_high < 0 and timing.prob_better < 0.001, timing.summary
        assert timing.verdict == "loss"
        # The ratio of the results' standardised rates lies within the learning's interval.
        ratio = np.mean([rates[v] for v in evening]) / np.mean([rates[v] for v in twins])
        assert timing.lift_low < ratio - 1 < timing.lift_high
        for other in ("tone", "channel"):
            (learning,) = [x for (s, f, _), x in found.items() if s == segment and f == other]
            assert learning.lift_low < 0 < learning.lift_high, learning.summary
    # Pooling each side's counts, as the learnings did, calls evening a win.
    units, conversions = strata[0].units.sum(axis=0), strata[0].conversions.sum(axis=0)
    sides = [[arms.index(v) for v in twins], [arms.index(v) for v in evening]]
    _, naive = summarize_binary(
        [units[side].sum() for side in sides],
        [conversions[side].sum() for side in sides],
        control=0,
    )
    assert naive.lift.low > 0 and naive.prob_beat_control > 0.999


def hierarchical_job(experiment, **diagnostics) -> AnalysisJob:
    """A succeeded hierarchical job on `activated` whose rows say evening-email won by 30%."""
    rows = [
        {"variant": "morning-push", "units": 1000, "rate": {"mean": 0.05}, "lift": None},
        {
            "variant": "evening-email",
            "units": 1000,
            "rate": {"mean": 0.065},
            "lift": {"mean": 0.3, "ci": [0.1, 0.5]},
            "prob_beat_control": 0.999,
        },
    ]
    return AnalysisJob(
        experiment_id=experiment.id,
        method="hierarchical",
        metric="activated",
        status="succeeded",
        finished_at=T0 + timedelta(days=7),
        result={
            "segments": [{"segment": s, "variants": rows} for s in ("all", "newcomers", "other")],
            "diagnostics": {"converged": True, "max_rhat": 1.002, "divergences": 0}
            | {"min_ess": 900.0}
            | diagnostics,
        },
    )


@pytest.mark.parametrize(
    "diagnostics",
    [
        {"converged": False, "max_rhat": 1.034, "divergences": 20, "min_ess": 146.0},
        {"max_rhat": 1.02, "converged": False},
        {"divergences": 3, "converged": False},
        {"min_ess": 146.0},  # the job's own flag does not weigh the ESS
    ],
)
def test_a_pymc_job_that_did_not_converge_gives_way_to_the_conjugate_results(database, diagnostics):
    with database.session(write=True) as session:
        experiment = started(session)
        drifting_bandit(session, experiment, ["evening-email"])
        session.add(hierarchical_job(experiment, **diagnostics))
        session.commit()
    with database.session(write=True) as session:
        published = publish(session=session, key="onboarding-nudge")
    activated = [x for x in published if x.metric == "activated"]
    assert {(x.method, x.verdict) for x in activated} == {("beta-binomial", "loss")}
    for learning in activated:
        assert learning.notes.startswith("The hierarchical PyMC job 1 did not converge (max R-hat")
        assert learning.note_codes[0] == "job_not_converged"
        assert len(learning.note_codes) == len(learning.notes.split("\n"))


def test_a_converged_pymc_job_feeds_the_learnings(database):
    with database.session(write=True) as session:
        experiment = started(session)
        # The same split every day: the job's counts, summed over the days, are not confounded.
        drifting_bandit(session, experiment, ["evening-email"], shares=[0.5] * 6)
        session.add(hierarchical_job(experiment))
        session.commit()
    with database.session(write=True) as session:
        published = publish(session=session, key="onboarding-nudge")
    activated = [x for x in published if x.metric == "activated"]
    assert {(x.method, x.lift_mean) for x in activated} == {("hierarchical", 0.3)}
    assert not any("did not converge" in x.notes for x in activated)
    assert not any("job_not_converged" in x.note_codes for x in activated)


def test_a_converged_pymc_job_on_a_drifting_bandit_gives_way_to_the_results(database):
    """The PyMC models take counts summed over allocation periods: under a bandit whose
    weights moved while the base rate drifted, that is the pooled comparison the results
    refuse (Simpson), however well the sampler converged."""
    with database.session(write=True) as session:
        experiment = started(session)
        drifting_bandit(session, experiment, ["evening-email"])
        session.add(hierarchical_job(experiment))
        session.commit()
    with database.session(write=True) as session:
        published = publish(session=session, key="onboarding-nudge")
    activated = [x for x in published if x.metric == "activated"]
    assert {(x.method, x.verdict) for x in activated} == {("beta-binomial", "loss")}
    for learning in activated:
        assert "sums each segment's counts over allocation periods" in learning.notes
        assert learning.note_codes[0] == "job_pooled_over_uneven_allocation"
        assert len(learning.note_codes) == len(learning.notes.split("\n"))
