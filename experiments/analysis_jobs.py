"""PyMC analyses as jobs: submitted over HTTP, claimed by one worker at a time, run with
progress, finished with a result and diagnostics or failed with the error.

Claiming is atomic on both databases: `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, a
conditional `UPDATE … WHERE status = 'queued'` on SQLite (whose writers are serialised anyway).
A running job's worker beats a heartbeat with each progress report; a job whose heartbeat is
older than STALE_AFTER (its worker died) is claimed again.
"""

import fcntl
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from analysis.pymc_models import factorial_problem
from experiments.clock import utcnow
from experiments.errors import InvalidSpec, NotFound
from experiments.statistics.cells import segment_variant_counts
from experiments.storage.database import Database
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AnalysisJob, Experiment
from experiments.vocabulary import control_index, primary_metric

log = logging.getLogger(__name__)

METHODS = ("hierarchical", "factorial")
# A running job whose heartbeat is older than this is taken for dead and claimed again. The
# longest gap between heartbeats is the model's compilation (no progress is reported while JAX
# compiles), so this must stay well above it.
STALE_AFTER = timedelta(minutes=5)
STATUSES = ("queued", "running", "succeeded", "failed")
# /metrics's buckets of a finished job's run time: PyMC analyses take seconds to an hour.
JOB_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
PROGRESS_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class JobSettings:
    """How the worker samples, and when it takes another worker's job for abandoned:
    KAIROS_ANALYSIS_DRAWS, _TUNE, _CHAINS and _STALE_SECONDS override."""

    # Four chains (split R-hat compares eight halves: stable to ±0.005 where two chains
    # were not) of 600 draws after 500 tuning steps; nutpie's adaptation settles fast.
    draws: int = 600
    tune: int = 500
    chains: int = 4
    stale_after: timedelta = STALE_AFTER

    @classmethod
    def from_env(cls) -> "JobSettings":
        def number(name: str, default: float, kind=int):
            value = os.environ.get(f"KAIROS_ANALYSIS_{name}")
            return kind(value) if value else default

        return cls(
            number("DRAWS", 600),
            number("TUNE", 500),
            number("CHAINS", 4),
            timedelta(seconds=number("STALE_SECONDS", STALE_AFTER.total_seconds(), float)),
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def submit(*, session: Session, key: str, method: str, metric: str | None = None) -> AnalysisJob:
    """Queue an analysis of an experiment's binary metric (default: the primary one)."""
    experiment = get_experiment(session=session, key=key)
    metrics = {m.key: m for m in experiment.metrics}
    if metric is None:
        metric = primary_metric(experiment).key
    problems: dict[str, list[str]] = {}
    if method not in METHODS:
        problems["method"] = [f"Must be one of: {', '.join(METHODS)}."]
    if metric not in metrics:
        problems["metric"] = [
            f"Unknown metric '{metric}'; this experiment measures: {', '.join(metrics)}."
        ]
    elif metrics[metric].type != "binary":
        problems["metric"] = ["The PyMC models analyse binary metrics."]
    if method == "factorial":
        variants = [dict(v.factors) for v in experiment.variants]
        control = control_index(experiment)
        problem = factorial_problem(variants, control)
        if problem:
            problems["method"] = [f"Not a factorial design: {problem}"]
    if problems:
        raise InvalidSpec(problems)
    job = AnalysisJob(experiment_id=experiment.id, method=method, metric=metric, stage="queued")
    session.add(job)
    session.commit()
    session.refresh(job)
    log.info("Analysis %s queued: %s of %s on %s.", job.id, method, key, metric)
    return job


def get_job(*, session: Session, job_id: int) -> tuple[AnalysisJob, str]:
    """The job and its experiment's key."""
    job = session.get(AnalysisJob, job_id)
    if job is None:
        raise NotFound(f"No analysis with id {job_id}.")
    return job, session.get(Experiment, job.experiment_id).key


def job_statistics(*, session: Session) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Jobs by status, and the run time in seconds of each finished one by its status (what
    /metrics reports: every job of the database, whichever worker ran it)."""
    counts = dict(
        session.execute(select(AnalysisJob.status, func.count()).group_by(AnalysisJob.status)).all()
    )
    durations: dict[str, list[float]] = {}
    finished = session.execute(
        select(AnalysisJob.status, AnalysisJob.started_at, AnalysisJob.finished_at).where(
            AnalysisJob.status.in_(("succeeded", "failed")),
            AnalysisJob.started_at.is_not(None),
            AnalysisJob.finished_at.is_not(None),
        )
    )
    for status, started, ended in finished:
        durations.setdefault(status, []).append(max(0.0, (ended - started).total_seconds()))
    return counts, durations


class JobsCollector:
    """Analysis jobs by status, and the durations of the finished ones, read from the
    database when scraped: the same figures from every process and every node (aggregate
    them with max, not sum)."""

    def __init__(self, database):
        self.database = database

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        try:
            with self.database.session() as session:
                counts, durations = job_statistics(session=session)
        except SQLAlchemyError:
            return  # /health says the database is unreachable; the rest still scrapes
        jobs = GaugeMetricFamily(
            "kairos_analysis_jobs",
            "Analysis jobs in the database, by status (database-wide).",
            labels=["status"],
        )
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        histogram = HistogramMetricFamily(
            "kairos_analysis_job_duration_seconds",
            "Run time (start to finish) of finished analysis jobs, by final status "
            "(database-wide).",
            labels=["status"],
        )
        for status in ("succeeded", "failed"):
            seconds = durations.get(status, [])
            buckets = [(str(b), sum(1 for s in seconds if s <= b)) for b in JOB_BUCKETS]
            buckets.append(("+Inf", len(seconds)))
            histogram.add_metric([status], buckets, sum(seconds))
        yield histogram


def claim(
    database: Database,
    worker: str,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> int | None:
    """Take the oldest queued job (or one whose worker stopped beating `stale_after` ago); its
    id, or None."""
    now = now or utcnow()
    stale = now - stale_after
    waiting = or_(
        AnalysisJob.status == "queued",
        (AnalysisJob.status == "running") & (AnalysisJob.heartbeat_at < stale),
    )
    candidates = select(AnalysisJob.id).where(waiting).order_by(AnalysisJob.id).limit(1)
    # Look before taking the write lock: an idle worker polls every second, and on SQLite a
    # write transaction would queue behind (and hold up) the assignment and outcome writers.
    with database.session() as session:
        if session.execute(candidates).scalar_one_or_none() is None:
            return None
    with database.session(write=True) as session:
        if database.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        job_id = session.execute(candidates).scalar_one_or_none()
        if job_id is None:
            return None
        taken = session.execute(
            update(AnalysisJob)
            .where(AnalysisJob.id == job_id, waiting)
            .values(
                status="running",
                worker=worker,
                stage="starting",
                progress=0.0,
                started_at=now,
                heartbeat_at=now,
            )
        ).rowcount
        session.commit()
    return job_id if taken else None


def run(database: Database, job_id: int, settings: JobSettings = JobSettings()) -> str:
    """Run a claimed job to its end; the final status ('succeeded' or 'failed')."""
    from analysis.pymc_models import Counts, FactorialModel, HierarchicalModel, SamplerSettings

    started = time.monotonic()
    try:
        with database.session() as session:
            job = session.get(AnalysisJob, job_id)
            experiment = session.get(Experiment, job.experiment_id)
            segments, variants, units, conversions = segment_variant_counts(
                session, experiment, job.metric
            )
            method, metric, key = job.method, job.metric, experiment.key
            factors = [dict(v.factors) for v in experiment.variants]
            control = control_index(experiment)
        used = units.sum(axis=1) > 0
        if used.sum() == 0:
            raise ValueError("The experiment has no units yet: there is nothing to analyse.")
        counts = Counts(
            segments=[s for s, u in zip(segments, used, strict=True) if u],
            variants=variants,
            units=units[used],
            conversions=conversions[used],
            control=control,
            factors=factors if method == "factorial" else [],
        )
        model_class = FactorialModel if method == "factorial" else HierarchicalModel
        model = model_class(
            counts,
            SamplerSettings(
                draws=settings.draws, tune=settings.tune, chains=settings.chains, seed=job_id
            ),
        )
        reporter = _Reporter(database, job_id)
        result = model.fit(progress=reporter)
        result.update(
            experiment=key,
            metric=metric,
            segments_without_units=[s for s, u in zip(segments, used, strict=True) if not u],
            note="Counts are summed over allocation periods.",
        )
        _finish(database, job_id, status="succeeded", result=result)
        log.info(
            "Analysis %s succeeded in %.1f s (max R-hat %s, %s divergences).",
            job_id,
            time.monotonic() - started,
            result["diagnostics"]["max_rhat"],
            result["diagnostics"]["divergences"],
        )
        return "succeeded"
    except Exception as error:  # reported on the job, never hidden
        log.exception("Analysis %s failed.", job_id)
        _finish(database, job_id, status="failed", error=f"{type(error).__name__}: {error}")
        return "failed"


class _Reporter:
    """Progress callback: writes progress, stage and heartbeat, at most once a second (and
    always at a stage change)."""

    def __init__(self, database: Database, job_id: int):
        self.database, self.job_id = database, job_id
        self.last, self.stage = 0.0, None

    def __call__(self, share: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.last, self.stage = now, stage
        with self.database.session(write=True) as session:
            session.execute(
                update(AnalysisJob)
                .where(AnalysisJob.id == self.job_id)
                .values(progress=round(min(share, 0.99), 3), stage=stage, heartbeat_at=utcnow())
            )
            session.commit()


def _finish(database: Database, job_id: int, *, status: str, result=None, error=None) -> None:
    with database.session(write=True) as session:
        session.execute(
            update(AnalysisJob)
            .where(AnalysisJob.id == job_id)
            .values(
                status=status,
                stage=status,
                progress=1.0 if status == "succeeded" else AnalysisJob.progress,
                result=result,
                error=error,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )
        session.commit()


class Worker:
    """Claims and runs jobs until stopped: `kairos worker`, or a thread of `kairos serve`."""

    def __init__(
        self,
        database: Database,
        *,
        poll_seconds: float = 1.0,
        settings: JobSettings | None = None,
        name: str | None = None,
    ):
        self.database = database
        self.poll_seconds = poll_seconds
        self.settings = settings or JobSettings.from_env()
        self.name = name or worker_name()
        self.stopping = threading.Event()

    def run_once(self) -> str | None:
        """Run one waiting job if there is one; its final status, or None."""
        job_id = claim(self.database, self.name, stale_after=self.settings.stale_after)
        if job_id is None:
            return None
        log.info("Worker %s runs analysis %s.", self.name, job_id)
        return run(self.database, job_id, self.settings)

    def run_forever(self) -> None:
        log.info("Analysis worker %s started; polling every %.1f s.", self.name, self.poll_seconds)
        while not self.stopping.is_set():
            try:
                if self.run_once() is None:
                    self.stopping.wait(self.poll_seconds)
            except Exception:  # a database hiccup: log it, wait, carry on
                log.exception("Analysis worker %s: claiming failed; retrying.", self.name)
                self.stopping.wait(self.poll_seconds * 5)
        log.info("Analysis worker %s stopped.", self.name)

    def stop(self) -> None:
        self.stopping.set()


def run_exclusively(worker: Worker, lock_path: str, retry_seconds: float = 5.0) -> None:
    """Run `worker` once this process holds the lock file: of the server's processes, one at
    a time runs analyses (each would otherwise take both cores from the requests). When the
    holder dies, the lock frees and another process's thread takes over."""
    with open(lock_path, "a+") as handle:
        while not worker.stopping.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                worker.stopping.wait(retry_seconds)
                continue
            try:
                worker.run_forever()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
