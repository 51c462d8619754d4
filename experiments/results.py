"""What the results say: the answer to GET /v1/experiments/{key}/results (README, "Walk-through:
read the results"), for one metric, per segment and for `all`.

It reads the arm-statistics read model (experiments/statistics/cells.py) and its comparisons
(experiments/statistics/comparisons.py), and adds the sample-ratio check (units per arm
against each cell's weights), each guardrail's verdict and a recommendation. Every sentence
a client reads has a stable code beside it: a segment's `notes` and `note_codes`, a row's
likewise (analysis/summary.py), the recommendation's `reason` and `code`
(analysis/stopping.py), the learned prior's `note` and `note_code`; the guardrails' and the
sample-ratio check's verdicts are codes too.
"""

from sqlmodel import Session

from analysis.stopping import SAMPLE_RATIO_MISMATCH, ThresholdOfCaring, recommend
from analysis.stratified import cell_shares, sample_ratio_by_cell
from analysis.summary import ArmSummary
from experiments.errors import InvalidSpec
from experiments.statistics.cells import Layout, MetricCells, metric_keys, read_cells, read_layout
from experiments.statistics.comparisons import (
    DEFAULT_PRIOR,
    SegmentAnalysis,
    analyse_segment,
    guardrail_checks,
)
from experiments.storage.repository import get_experiment
from experiments.storage.tables import Metric
from experiments.vocabulary import ALL_SEGMENT, primary_metric

# A segment's notes: each sentence beside its stable code.
SEGMENT_WITHOUT_UNITS = "segment_without_units"
COMPARED_WITHIN_PERIODS = "compared_within_periods"
SEGMENT_NOTES = {
    SEGMENT_WITHOUT_UNITS: "No units in this segment yet: every row shows the prior.",
    COMPARED_WITHIN_PERIODS: "Bandit weights changed over time: arms are compared within periods.",
}
# The learned prior's note.
LEARNED_PRIOR = "learned_prior"
LEARNED_PRIOR_NOTE = (
    "Per segment and variant, the registry's pooled evidence at creation, worth `units` units; "
    "a segment it had not seen uses `all`; the holdout and stratified comparisons start from "
    "their usual priors."
)
# The sample-ratio check's verdict (a mismatch is also the recommendation's code for it).
SAMPLE_RATIO_MATCHES = "sample_ratio_matches"
NO_UNITS_TO_CHECK = "no_units_to_check"
SAMPLE_RATIO_VERDICTS = (SAMPLE_RATIO_MATCHES, SAMPLE_RATIO_MISMATCH, NO_UNITS_TO_CHECK)


def experiment_results(
    *, session: Session, key: str, metric: str | None = None, segment: str | None = None
) -> dict:
    """The results answer (README, "Walk-through: read the results"), optionally for one metric
    and segment;
    `all` is always included."""
    experiment = get_experiment(session=session, key=key)
    metrics = {m.key: m for m in experiment.metrics}
    primary = primary_metric(experiment)
    metric = metric or primary.key
    if metric not in metrics:
        listed = ", ".join(metrics)
        raise InvalidSpec(
            {"metric": [f"Unknown metric '{metric}'; this experiment measures: {listed}."]}
        )
    layout = read_layout(session, experiment)
    if segment is not None and segment != ALL_SEGMENT and segment not in layout.segments:
        listed = ", ".join([ALL_SEGMENT, *layout.segments])
        raise InvalidSpec(
            {"segment": [f"Unknown segment '{segment}'; this experiment has: {listed}."]}
        )
    guardrail_metrics = [m for m in experiment.metrics if m.role == "guardrail"]
    cells = read_cells(
        session, experiment, layout, {metric, primary.key, *metric_keys(guardrail_metrics)}
    )

    shown = [ALL_SEGMENT]
    if segment is None:
        shown += layout.segments
    elif segment != ALL_SEGMENT:
        shown.append(segment)
    analysed = [analyse_segment(layout, metrics[metric], cells[metric], name) for name in shown]
    srm = _sample_ratio(layout, cells[metric], experiment.holdout)
    checks = guardrail_checks(layout, guardrail_metrics, cells)
    overall = analysed[0]
    if metric != primary.key:
        overall = analyse_segment(layout, primary, cells[primary.key], ALL_SEGMENT)
    advice = recommend(
        metric=primary.key,
        variants=layout.arms[: layout.variants],
        arms=overall.summaries[: layout.variants],
        control=layout.control,
        threshold=ThresholdOfCaring(
            experiment.relative_threshold_of_caring, experiment.threshold_of_caring
        ),
        guardrails=checks,
        srm_flag=srm["flag"],
        srm_p_value=srm["p_value"],
    )
    binary = metrics[metric].type == "binary"
    return {
        "experiment": experiment.key,
        "status": experiment.status,
        "metric": metric,
        "method": "beta-binomial" if binary else "normal",
        "prior": _prior_answer(binary, layout, metrics[metric]),
        "srm": srm,
        "segments": [_segment_block(layout, a) for a in analysed],
        "guardrails": [
            {
                "metric": c.metric,
                "variant": c.variant,
                "margin": c.margin,
                "prob_worse": c.prob_worse,
                "p_value": c.p_value,
                "flag": c.tripped,
                "conclusive": c.conclusive,
                "code": c.verdict,
            }
            for c in checks
        ],
        "recommendation": {
            "action": advice.action,
            "code": advice.code,
            "reason": advice.reason,
            "variant": advice.variant,
            "prob_wrong_choice": advice.prob_wrong_choice,
            "expected_loss": advice.expected_loss,
            "relative_expected_loss": advice.relative_expected_loss,
            "threshold_of_caring": advice.threshold,
            "relative_threshold_of_caring": None
            if experiment.threshold_of_caring is not None
            else experiment.relative_threshold_of_caring,
        },
    }


def _prior_answer(binary: bool, layout: Layout, metric: Metric) -> dict:
    priors = layout.priors
    if binary and priors and priors.get("metric") == metric.key:
        return {
            "distribution": "beta",
            "source": "learnings",
            "units": priors["units"],
            "segments": {
                name: {v: {"alpha": a, "beta": b} for v, (a, b) in found["arms"].items()}
                for name, found in priors["segments"].items()
            },
            "evidence": priors.get("evidence", []),
            "note": LEARNED_PRIOR_NOTE,
            "note_code": LEARNED_PRIOR,
        }
    if binary:
        return {
            "distribution": "beta",
            "alpha": DEFAULT_PRIOR.alpha,
            "beta": DEFAULT_PRIOR.beta,
            "source": DEFAULT_PRIOR.source,
        }
    return {"distribution": "flat", "source": "default"}


def _segment_block(layout: Layout, analysed: SegmentAnalysis) -> dict:
    codes = []
    if analysed.units == 0:
        codes.append(SEGMENT_WITHOUT_UNITS)
    if analysed.stratified:
        codes.append(COMPARED_WITHIN_PERIODS)
    return {
        "segment": analysed.segment,
        "units": analysed.units,
        "stratified": analysed.stratified,
        "notes": [SEGMENT_NOTES[code] for code in codes],
        "note_codes": codes,
        "variants": [
            _variant_row(layout.arms[i], i == layout.holdout, summary)
            for i, summary in enumerate(analysed.summaries)
        ],
    }


def _variant_row(arm: str, holdout: bool, summary: ArmSummary) -> dict:
    lift = None
    if summary.lift is not None:
        lift = {
            "mean": summary.lift.mean,
            "median": summary.lift.median,
            "ci": [summary.lift.low, summary.lift.high],
        }
    return {
        "variant": None if holdout else arm,
        "holdout": holdout,
        "units": summary.units,
        "conversions": summary.conversions,
        "rate": {"mean": summary.rate.mean, "ci": [summary.rate.low, summary.rate.high]},
        "lift": lift,
        "prob_beat_control": summary.prob_beat_control,
        "prob_best": summary.prob_best,
        "expected_loss": summary.expected_loss,
        "notes": list(summary.notes),
        "note_codes": list(summary.note_codes),
    }


def _sample_ratio(layout: Layout, cells: MetricCells, holdout: float) -> dict:
    """Units per arm against what each (period, segment) cell's weights should give."""
    arms = len(layout.arms)
    observed = cells.units.reshape(-1, arms).sum(axis=0)
    answer = {
        "p_value": None,
        "flag": False,
        "observed": {a: int(n) for a, n in zip(layout.arms, observed, strict=True)},
        "expected": None,
        "code": NO_UNITS_TO_CHECK,
    }
    if observed.sum() == 0:
        return answer
    shares = cell_shares(layout.weights, holdout=holdout).reshape(-1, arms)
    check = sample_ratio_by_cell(cells.units.reshape(-1, arms), shares)
    answer.update(
        p_value=check.p_value,
        flag=check.flag,
        expected={a: round(float(e), 3) for a, e in zip(layout.arms, check.expected, strict=True)},
        code=SAMPLE_RATIO_MISMATCH if check.flag else SAMPLE_RATIO_MATCHES,
    )
    return answer
