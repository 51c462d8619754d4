"""Each segment's arms compared, from the read model's cells: the summaries that the results,
the guardrails (and so the bandit's weights) and the published learnings all share.

Each segment is summarised over its periods, and `all` over every (period, segment) cell.
Cells are pooled while every cell with units had the same weights (a fixed split, or a
bandit's first period); once a bandit's weights differ between cells, they are strata
(analysis/stratified.py), so that drift plus changing weights cannot fake a winner. A binary
metric's pooled comparison starts from the experiment's learned prior where it has one (its
primary metric), else from the default.
"""

import zlib
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from sqlmodel import Session

from analysis.stopping import GuardrailCheck, guardrail_p_value
from analysis.summary import ArmSummary, Guardrail, Prior, summarize_binary, summarize_continuous
from experiments.statistics.cells import (
    Layout,
    MetricCells,
    cell_view,
    metric_keys,
    prior_arms,
    read_cells,
    read_layout,
)
from experiments.storage.tables import Experiment, Metric
from experiments.vocabulary import ALL_SEGMENT

DEFAULT_PRIOR = Prior()


@dataclass
class SegmentAnalysis:
    """One segment's (or all's) summaries of every arm, and whether they were stratified."""

    segment: str
    units: int
    stratified: bool
    summaries: list[ArmSummary]


def analyse_segment(
    layout: Layout,
    metric: Metric,
    cells: MetricCells,
    segment: str,
    guardrail: Guardrail | None = None,
) -> SegmentAnalysis:
    """A metric's arms compared in one segment (or `all`): pooled, or within cells where a
    bandit's weights differed between them; seeded, so the same data give the same numbers."""
    units, conversions, sums, squares, weights = cell_view(layout, cells, segment)
    stratify = needs_strata(units, weights)
    if metric.type == "binary":
        summaries = summarize_binary(
            units,
            np.minimum(conversions, units),
            control=layout.control,
            holdout=layout.holdout,
            prior=segment_prior(layout, metric, segment),
            higher_is_better=metric.higher_is_better,
            guardrail=guardrail,
            stratify=stratify,
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
    return SegmentAnalysis(segment, int(units.sum()), stratify, summaries)


def needs_strata(units: np.ndarray, weights: np.ndarray) -> bool:
    """Strata are needed only where the allocation differed between cells with units."""
    used = units.sum(axis=1) > 0
    return bool(used.sum() > 1 and not np.allclose(weights[used], weights[used][0]))


def segment_prior(layout: Layout, metric: Metric, segment: str) -> Prior:
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


def comparison_seed(*parts: str) -> int:
    """A fixed seed per (segment, metric): the same data always give the same numbers."""
    return zlib.crc32("\x00".join(parts).encode())


def guardrail_checks(
    layout: Layout, guardrail_metrics: list[Metric], cells: dict[str, MetricCells]
) -> list[GuardrailCheck]:
    """Per guardrail metric and variant, on all units: the always-valid p-value of "no worse
    than control by more than the margin" (what trips it), and P(worse by more than the
    margin) now."""
    checks = []
    for metric in guardrail_metrics:
        margin = metric.margin or 0.0
        analysed = analyse_segment(
            layout, metric, cells[metric.key], ALL_SEGMENT, Guardrail(margin)
        )
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


def tripped_guardrails(session: Session, experiment: Experiment) -> list[GuardrailCheck]:
    """The guardrail checks that trip now: a bandit holds their variants at its floor, and
    switches off those whose harm is conclusive."""
    guardrail_metrics = [m for m in experiment.metrics if m.role == "guardrail"]
    if not guardrail_metrics:
        return []
    layout = read_layout(session, experiment)
    cells = read_cells(session, experiment, layout, set(metric_keys(guardrail_metrics)))
    return [c for c in guardrail_checks(layout, guardrail_metrics, cells) if c.tripped]


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
    def analysed(self) -> SegmentAnalysis:
        return analyse_segment(self.layout, self.metric, self.cells, self.segment)


def metric_strata(
    *, session: Session, experiment: Experiment, metric: Metric, own_data_only: bool = False
) -> tuple[Layout, list[SegmentStrata]]:
    """`all` and each segment of a metric, with the cells and the summaries the results answer
    shows: what a published learning reads. With `own_data_only`, from the default prior
    rather than the one the experiment learned from the registry."""
    layout = read_layout(session, experiment)
    if own_data_only:
        layout = replace(layout, priors=None)
    cells = read_cells(session, experiment, layout, {metric.key})[metric.key]
    found = []
    for name in [ALL_SEGMENT, *layout.segments]:
        units, conversions, _, _, weights = cell_view(layout, cells, name)
        found.append(
            SegmentStrata(
                segment=name,
                units=units,
                conversions=np.minimum(conversions, units),
                stratified=needs_strata(units, weights),
                prior=segment_prior(layout, metric, name),
                seed=comparison_seed(name, metric.key),
                layout=layout,
                metric=metric,
                cells=cells,
            )
        )
    return layout, found
