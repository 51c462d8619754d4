"""An experiment's results: per segment and for `all`, from the sufficient statistics alone.

The statistics (`arm_stats`) are read into arrays of shape (periods, segments, arms), the arms
being the variants and, with a holdout, the holdout last. Each segment is summarised over its
periods, and `all` over every (period, segment) cell. Cells are pooled while every cell with
units had the same weights (a fixed split, or a bandit's first period); once a bandit's weights
differ between cells, they are strata (analysis/stratified.py), so that drift plus changing
weights cannot fake a winner.

The answer also carries the sample-ratio check (units per arm against each cell's weights),
each guardrail's always-valid p-value (and P(worse than control by more than its margin)),
and a recommendation.
"""

import zlib
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from sqlalchemy import select
from sqlmodel import Session

from analysis.stopping import (
    GuardrailCheck,
    ThresholdOfCaring,
    guardrail_p_value,
    recommend,
)
from analysis.stratified import cell_shares, sample_ratio_by_cell
from analysis.summary import ArmSummary, Guardrail, Prior, summarize_binary, summarize_continuous
from experiments.errors import InvalidSpec
from experiments.lifecycle import segment_keys
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, ArmStats, Experiment, Metric
from experiments.vocabulary import ALL_SEGMENT, HOLDOUT_ARM, control_index, primary_metric

DEFAULT_PRIOR = Prior()


@dataclass
class Layout:
    """How an experiment's statistics are laid out in arrays, and each cell's weights."""

    periods: list[int]
    segments: list[str]
    arms: list[str]
    control: int
    holdout: int | None
    # (periods, segments, variants): the weights each cell assigned with.
    weights: np.ndarray
    # The experiment's learned prior snapshot, if it asked for one.
    priors: dict | None = None

    @property
    def variants(self) -> int:
        return len(self.arms) - (self.holdout is not None)


@dataclass
class MetricCells:
    """One metric's statistics, each of shape (periods, segments, arms)."""

    units: np.ndarray
    conversions: np.ndarray
    sums: np.ndarray
    squares: np.ndarray


def results(
    *, session: Session, key: str, metric: str | None = None, segment: str | None = None
) -> dict:
    """The results answer (see DESIGN.md, "HTTP API"), optionally for one metric and segment;
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
    layout = _layout(session, experiment)
    if segment is not None and segment != ALL_SEGMENT and segment not in layout.segments:
        listed = ", ".join([ALL_SEGMENT, *layout.segments])
        raise InvalidSpec(
            {"segment": [f"Unknown segment '{segment}'; this experiment has: {listed}."]}
        )
    guardrail_metrics = [m for m in experiment.metrics if m.role == "guardrail"]
    cells = _load(
        session, experiment, layout, {metric, primary.key, *metrics_of(guardrail_metrics)}
    )

    shown = [ALL_SEGMENT]
    if segment is None:
        shown += layout.segments
    elif segment != ALL_SEGMENT:
        shown.append(segment)
    analysed = [_analyse(layout, metrics[metric], cells[metric], name) for name in shown]
    srm = _sample_ratio(layout, cells[metric], experiment.holdout)
    checks = guardrail_checks(layout, guardrail_metrics, cells)
    overall = analysed[0]
    if metric != primary.key:
        overall = _analyse(layout, primary, cells[primary.key], ALL_SEGMENT)
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


def tripped_guardrails(session: Session, experiment: Experiment) -> list[GuardrailCheck]:
    """The guardrail checks that trip now: a bandit holds their variants at its floor, and
    switches off those whose harm is conclusive."""
    guardrail_metrics = [m for m in experiment.metrics if m.role == "guardrail"]
    if not guardrail_metrics:
        return []
    layout = _layout(session, experiment)
    cells = _load(session, experiment, layout, set(metrics_of(guardrail_metrics)))
    return [c for c in guardrail_checks(layout, guardrail_metrics, cells) if c.tripped]


def guardrail_checks(
    layout: Layout, guardrail_metrics: list[Metric], cells: dict[str, MetricCells]
) -> list[GuardrailCheck]:
    """Per guardrail metric and variant, on all units: the always-valid p-value of "no worse
    than control by more than the margin" (what trips it), and P(worse by more than the
    margin) now."""
    checks = []
    for metric in guardrail_metrics:
        margin = metric.margin or 0.0
        analysed = _analyse(layout, metric, cells[metric.key], ALL_SEGMENT, Guardrail(margin))
        control = analysed.summaries[layout.control].rate
        for i, summary in enumerate(analysed.summaries[: layout.variants]):
            if i == layout.control:
                continue
            p_value = guardrail_p_value(
                control.mean,
                control.sd,
                summary.rate.mean,
                summary.rate.sd,
                margin=margin,
                higher_is_better=metric.higher_is_better,
            )
            checks.append(
                GuardrailCheck(
                    metric.key, layout.arms[i], margin, summary.prob_worse, float(p_value)
                )
            )
    return checks


@dataclass
class SegmentStrata:
    """One segment's (or all's) cells of a metric, as the results compare them; `analysed`,
    the results' summaries, is computed when first read (under a bandit, it samples)."""

    segment: str
    units: np.ndarray  # (cells, arms): periods, or period × segment for `all`
    conversions: np.ndarray
    stratified: bool  # compared within cells: a bandit's weights differed between them
    prior: Prior  # of the pooled comparison
    seed: int  # of the stratified comparison's draws
    layout: Layout
    metric: Metric
    cells: MetricCells

    @cached_property
    def analysed(self) -> "Analysed":
        return _analyse(self.layout, self.metric, self.cells, self.segment)


def metric_strata(
    *, session: Session, experiment: Experiment, metric: Metric, own_data_only: bool = False
) -> tuple[Layout, list[SegmentStrata]]:
    """`all` and each segment of a metric, with the cells and the summaries the results answer
    shows: what a published learning reads. With `own_data_only`, from the default prior
    rather than the one the experiment learned from the registry."""
    layout = _layout(session, experiment)
    if own_data_only:
        layout = replace(layout, priors=None)
    cells = _load(session, experiment, layout, {metric.key})[metric.key]
    found = []
    for name in [ALL_SEGMENT, *layout.segments]:
        units, conversions, _, _, weights = _cell_view(layout, cells, name)
        found.append(
            SegmentStrata(
                segment=name,
                units=units,
                conversions=np.minimum(conversions, units),
                stratified=_needs_strata(units, weights),
                prior=_prior(layout, metric, name),
                seed=_seed(name, metric.key),
                layout=layout,
                metric=metric,
                cells=cells,
            )
        )
    return layout, found


def segment_variant_counts(
    session: Session, experiment: Experiment, metric: str
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(segments, variants, units, conversions) of a metric, summed over periods, without the
    holdout: what the PyMC models take. Arrays have shape (segments, variants)."""
    layout = _layout(session, experiment)
    cells = _load(session, experiment, layout, {metric})[metric]
    arms = slice(0, layout.variants)
    units = cells.units.sum(axis=0)[:, arms]
    conversions = np.minimum(cells.conversions.sum(axis=0)[:, arms], units)
    return layout.segments, layout.arms[: layout.variants], units, conversions


def prior_arms(priors: dict | None, segment: str, variants: list[str]):
    """(alpha, beta) lists for `variants` in `segment` from a snapshot, or None."""
    if not priors:
        return None
    found = priors["segments"].get(segment) or priors["segments"].get(ALL_SEGMENT)
    if not found or any(v not in found["arms"] for v in variants):
        return None
    return [found["arms"][v][0] for v in variants], [found["arms"][v][1] for v in variants]


def metrics_of(metrics: list[Metric]) -> list[str]:
    return [m.key for m in metrics]


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
            "note": "Per segment and variant, the registry's pooled evidence at creation, "
            "worth `units` units; a segment it had not seen uses `all`; the holdout and "
            "stratified comparisons start from their usual priors.",
        }
    if binary:
        return {
            "distribution": "beta",
            "alpha": DEFAULT_PRIOR.alpha,
            "beta": DEFAULT_PRIOR.beta,
            "source": DEFAULT_PRIOR.source,
        }
    return {"distribution": "flat", "source": "default"}


def _layout(session: Session, experiment: Experiment) -> Layout:
    variants = [v.key for v in experiment.variants]
    segments = segment_keys(experiment)
    arms = variants + ([HOLDOUT_ARM] if experiment.holdout > 0 else [])
    rows = session.execute(
        select(AllocationPeriod.number, AllocationPeriod.weights)
        .where(AllocationPeriod.experiment_id == experiment.id)
        .order_by(AllocationPeriod.number)
    ).all()
    periods = [number for number, _ in rows] or [1]
    declared = np.array([v.weight for v in experiment.variants])
    weights = np.tile(declared, (len(periods), len(segments), 1))
    for p, (_, by_segment) in enumerate(rows):
        for s, name in enumerate(segments):
            given = (by_segment or {}).get(name)
            if given:
                weights[p, s] = [given.get(v, 0.0) for v in variants]
    return Layout(
        periods=periods,
        segments=segments,
        arms=arms,
        control=control_index(experiment),
        holdout=len(variants) if experiment.holdout > 0 else None,
        weights=weights,
        priors=experiment.priors if experiment.prior == "learnings" else None,
    )


def _load(
    session: Session, experiment: Experiment, layout: Layout, metrics: set[str]
) -> dict[str, MetricCells]:
    shape = (len(layout.periods), len(layout.segments), len(layout.arms))
    cells = {
        m: MetricCells(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape))
        for m in metrics
    }
    p_index = {n: i for i, n in enumerate(layout.periods)}
    s_index = {s: i for i, s in enumerate(layout.segments)}
    a_index = {a: i for i, a in enumerate(layout.arms)}
    rows = session.execute(
        select(
            ArmStats.metric,
            ArmStats.period,
            ArmStats.segment,
            ArmStats.variant,
            ArmStats.units,
            ArmStats.conversions,
            ArmStats.sum,
            ArmStats.sum_squares,
        ).where(ArmStats.experiment_id == experiment.id, ArmStats.metric.in_(metrics))
    ).all()
    for metric, period, segment, arm, units, conversions, total, squares in rows:
        at = (p_index.get(period), s_index.get(segment), a_index.get(arm))
        if None in at:
            continue
        target = cells[metric]
        target.units[at] += units or 0
        target.conversions[at] += conversions or 0
        target.sums[at] += total or 0.0
        target.squares[at] += squares or 0.0
    return cells


def _cell_view(layout: Layout, cells: MetricCells, segment: str):
    """(units, conversions, sums, squares, weights) as (cells, arms) arrays for one segment
    (its periods) or for `all` (every period × segment)."""
    arrays = (cells.units, cells.conversions, cells.sums, cells.squares, layout.weights)
    if segment == ALL_SEGMENT:
        return tuple(a.reshape(-1, a.shape[-1]) for a in arrays)
    s = layout.segments.index(segment)
    return tuple(a[:, s, :] for a in arrays)


@dataclass
class Analysed:
    segment: str
    units: int
    stratified: bool
    summaries: list[ArmSummary]


def _analyse(
    layout: Layout,
    metric: Metric,
    cells: MetricCells,
    segment: str,
    guardrail: Guardrail | None = None,
) -> Analysed:
    units, conversions, sums, squares, weights = _cell_view(layout, cells, segment)
    stratify = _needs_strata(units, weights)
    if metric.type == "binary":
        summaries = summarize_binary(
            units,
            np.minimum(conversions, units),
            control=layout.control,
            holdout=layout.holdout,
            prior=_prior(layout, metric, segment),
            higher_is_better=metric.higher_is_better,
            guardrail=guardrail,
            stratify=stratify,
            rng=np.random.default_rng(_seed(segment, metric.key)),
        )
    else:
        summaries = summarize_continuous(
            units,
            sums,
            squares,
            control=layout.control,
            holdout=layout.holdout,
            higher_is_better=metric.higher_is_better,
            guardrail=guardrail,
            stratify=stratify,
            with_value=conversions,
        )
    return Analysed(segment, int(units.sum()), stratify, summaries)


def _needs_strata(units: np.ndarray, weights: np.ndarray) -> bool:
    """Strata are needed only where the allocation differed between cells with units."""
    used = units.sum(axis=1) > 0
    return bool(used.sum() > 1 and not np.allclose(weights[used], weights[used][0]))


def _prior(layout: Layout, metric: Metric, segment: str) -> Prior:
    """The learned prior of the primary metric (holdout: Beta(1, 1)), else the default."""
    priors = layout.priors
    if not priors or priors.get("metric") != metric.key:
        return DEFAULT_PRIOR
    found = prior_arms(priors, segment, layout.arms[: layout.variants])
    if found is None:
        return DEFAULT_PRIOR
    alpha, beta = found
    extra = [1.0] * (len(layout.arms) - layout.variants)
    return Prior(np.array(alpha + extra), np.array(beta + extra), "learnings")


def _seed(*parts: str) -> int:
    """A fixed seed per (segment, metric): the same data always give the same numbers."""
    return zlib.crc32("\x00".join(parts).encode())


def _segment_block(layout: Layout, analysed: Analysed) -> dict:
    notes = []
    if analysed.units == 0:
        notes.append("No units in this segment yet: every row shows the prior.")
    if analysed.stratified:
        notes.append("Bandit weights changed over time: arms are compared within periods.")
    return {
        "segment": analysed.segment,
        "units": analysed.units,
        "stratified": analysed.stratified,
        "notes": notes,
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
    }
    if observed.sum() == 0:
        return answer
    shares = cell_shares(layout.weights, holdout=holdout).reshape(-1, arms)
    check = sample_ratio_by_cell(cells.units.reshape(-1, arms), shares)
    answer.update(
        p_value=check.p_value,
        flag=check.flag,
        expected={a: round(float(e), 3) for a, e in zip(layout.arms, check.expected, strict=True)},
    )
    return answer
