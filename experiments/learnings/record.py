"""What a learning is: one comparison an experiment showed (or a finding written by hand), its
notes each with a stable code beside the sentence, the one-sentence summary a person reads,
and the flat record it is exported as.
"""

import csv
import io
from dataclasses import dataclass

from sqlmodel import Session

from experiments.clock import utcnow
from experiments.errors import NotFound
from experiments.storage.repository import get_experiment
from experiments.storage.tables import Learning
from experiments.vocabulary import ALL_SEGMENT

# The factor of a learning that compares a whole variant with the control.
VARIANT_FACTOR = "variant"

# The notes a publication writes: a stable code a client can switch on, and the sentence's
# template a person reads. A published learning stores one code per line of its notes, in order;
# a hand-written one's notes are a person's words, without codes.
OWN_DATA = "own_data"
JOB_NOT_CONVERGED = "job_not_converged"
JOB_POOLED_OVER_UNEVEN_ALLOCATION = "job_pooled_over_uneven_allocation"
NOT_A_DISCOVERY = "not_a_discovery"
NOTES = {
    OWN_DATA: (
        "From this experiment's own data: its results start from the registry's prior, which "
        "the registry already holds."
    ),
    JOB_NOT_CONVERGED: (
        "The {method} PyMC job {job} did not converge (max R-hat {rhat}, {divergences} "
        "divergences, bulk ESS {ess}; needed R-hat ≤ {max_rhat}, no divergence, ESS ≥ "
        "{min_ess}): these are the conjugate results."
    ),
    JOB_POOLED_OVER_UNEVEN_ALLOCATION: (
        "The {method} PyMC job {job} sums each segment's counts over allocation periods whose "
        "weights differed (a bandit's): its comparisons are confounded by the changing "
        "allocation, so these are the conjugate results, compared within periods."
    ),
    NOT_A_DISCOVERY: (
        "P(better) {prob:.3f}, but not a discovery among the publication's {comparisons} "
        "comparisons at a {false_discovery_rate:.0%} false-discovery rate (always-valid p "
        "{p}): with daily looks and this many comparisons, chance alone gets there."
    ),
}

EXPORT_FIELDS = (
    "id",
    "source",
    "experiment_key",
    "metric",
    "segment",
    "factor",
    "level",
    "baseline_level",
    "channel",
    "lift_mean",
    "lift_median",
    "lift_low",
    "lift_high",
    "log_lift_mean",
    "log_lift_sd",
    "prob_better",
    "units",
    "method",
    "always_valid_p",
    "comparisons",
    "false_discovery_rate",
    "verdict",
    "summary",
    "hypothesis",
    "notes",
    "note_codes",
    "tags",
    "links",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Note:
    """One note of a published learning: its code (a key of NOTES) and its sentence."""

    code: str
    text: str

    @classmethod
    def of(cls, code: str, **values) -> "Note":
        return cls(code, NOTES[code].format(**values))


def summary_sentence(learning: Learning) -> str:
    """'For newcomers, push beat email on activated by +14% (95%: +6% to +22%), probability
    0.999, 8,000 users.'"""
    who = "Across all users" if learning.segment == ALL_SEGMENT else f"For {learning.segment}"
    if learning.factor == VARIANT_FACTOR:
        subject, other = f"'{learning.level}'", f"the control '{learning.baseline_level}'"
    else:
        subject, other = learning.level, learning.baseline_level
    verb = {
        "win": "beat",
        "loss": "did worse than",
        "flat": "did about as well as",
        "inconclusive": "was not clearly different from",
    }[learning.verdict]
    if learning.lift_mean is None:
        return f"{who}, {subject} {verb} {other} on {learning.metric} ({learning.units:,} users)."
    if learning.lift_median is not None:
        by = f"{_percent(learning.lift_median)} (median; 95%:"
    else:
        by = f"{_percent(learning.lift_mean)} (95%:"
    return (
        f"{who}, {subject} {verb} {other} on {learning.metric} by {by} "
        f"{_percent(learning.lift_low)} to {_percent(learning.lift_high)}), probability "
        f"{learning.prob_better:.3f}, {learning.units:,} users."
    )


def _percent(value: float) -> str:
    """+14%; a value that would round to ±0% keeps a decimal (-0.4%, not -0%)."""
    return f"{value:+.1%}" if abs(value) < 0.005 else f"{value:+.0%}"


def create_manual(*, session: Session, fields: dict) -> Learning:
    """A learning written by hand (an interview, qualitative research), with tags and links."""
    now = utcnow()
    experiment_key = fields.pop("experiment", None)
    experiment_id = None
    if experiment_key:
        experiment_id = get_experiment(session=session, key=experiment_key).id
    learning = Learning(
        source="manual",
        experiment_id=experiment_id,
        experiment_key=experiment_key,
        created_at=now,
        updated_at=now,
        **fields,
    )
    session.add(learning)
    session.commit()
    session.refresh(learning)
    return learning


def get_learning(*, session: Session, learning_id: int) -> Learning:
    learning = session.get(Learning, learning_id)
    if learning is None:
        raise NotFound(f"No learning with id {learning_id}.")
    return learning


# The fields that hold lists: one CSV cell each, their items joined by ";".
LIST_FIELDS = ("note_codes", "tags", "links")


# A cell a spreadsheet would read as a formula (OWASP's CSV injection): a summary or tag a
# client wrote that starts with one of these is exported behind an apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_csv(records: list[dict]) -> str:
    """Records of EXPORT_FIELDS (from `as_record`) as CSV with a header row; text that a
    spreadsheet would run as a formula is exported as text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for record in records:
        row = {**record, **{f: ";".join(record[f] or []) for f in LIST_FIELDS}}
        writer.writerow({name: _inert(value) for name, value in row.items()})
    return out.getvalue()


def _inert(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def as_record(learning: Learning) -> dict:
    """The learning as a flat record of EXPORT_FIELDS, moments in ISO 8601 (CSV, JSON)."""
    record = {name: getattr(learning, name) for name in EXPORT_FIELDS}
    for name in ("created_at", "updated_at"):
        record[name] = record[name].isoformat() if record[name] else None
    return record
