"""/ui: pages for growth teams and analysts, over the same domain functions as the API."""

import functools
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie
from marshmallow import EXCLUDE, ValidationError

from api.auth import lookup_key
from api.db import get_database, get_session, get_snapshot_cache
from api.errors import flatten_errors
from api.learnings.schemas import EvidenceQuerySchema, LearningQuerySchema
from api.pages import figures, forms
from api.pages.session import check_csrf, csrf_token, is_page
from experiments import bounds, keys, overview, workflows
from experiments.allocation import reweight as reweighting
from experiments.analysis_jobs import submit
from experiments.errors import KairosError
from experiments.learnings.evidence import evidence as pooled_evidence
from experiments.learnings.publish import publish as publish_learnings
from experiments.learnings.record import as_csv, as_record
from experiments.learnings.search import Filters, search
from experiments.results import experiment_results
from experiments.storage import repository
from experiments.vocabulary import ALL_SEGMENT, STATUSES

bp = Blueprint(
    "pages",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PAGE_SCOPES = ("read", "manage")
PAGE_SIZE = 25
OPEN_ENDPOINTS = ("pages.login", "pages.login_post", "pages.static")


# -- sign in, scopes, CSRF ----------------------------------------------------------------------


@bp.before_request
def signed_in_key():
    """Check the form token of every POST, then find the signed-in key (revoked keys are
    signed out); pages other than the sign-in form need one."""
    check_csrf()
    g.page_key = None
    signed_in = cookie.get("session")
    if signed_in is not None:
        # A short read of its own: a POST's request session takes SQLite's write lock, which
        # an action that writes through its own sessions (a reweight) must not find taken.
        with get_database().session() as session:
            g.page_key = keys.page_session_key(session=session, token=signed_in)
        if g.page_key is None:
            cookie.pop("session", None)
    if g.page_key is None and request.endpoint not in OPEN_ENDPOINTS:
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    return None


@bp.after_request
def not_kept_or_framed(response):
    """A signed-in page (or its CSV) is not kept by the browser or a proxy, and no other site
    may frame a page (clickjacking a confirm button)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


def granted() -> set[str]:
    key = g.get("page_key")
    return keys.granted_scopes(key) if key is not None else set()


def needs(scope: str):
    """A page or action only for keys granting `scope` (403 otherwise)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if scope not in granted():
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


@bp.context_processor
def page_context() -> dict:
    return {
        "csrf_token": csrf_token,
        "can_manage": "manage" in granted(),
        "signed_in": g.get("page_key"),
    }


def safe_next(target: str | None) -> str:
    """Only a path within the pages is followed after signing in: no other site, no way out of
    /ui by dot segments or backslashes, no control character (a CR or LF would break the
    Location header)."""
    if target and target.isprintable() and "\\" not in target:
        parts = urlsplit(target)
        path = unquote(parts.path)  # a browser reads %2e%2e as a dot segment
        if not parts.scheme and not parts.netloc and is_page(path) and ".." not in path:
            return target
    return url_for("pages.experiments")


@bp.get("/login")
def login():
    if g.page_key is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("pages/login.html", next=request.args.get("next", ""))


@bp.post("/login")
def login_post():
    token = request.form.get("token", "").strip()
    key = lookup_key_for_pages(token)
    if key is None:
        flash("That key is not valid, or it was revoked.", "error")
        return render_template("pages/login.html", next=request.form.get("next", "")), 401
    if not set(PAGE_SCOPES) & keys.granted_scopes(key):
        flash(
            f"The key '{key.name}' (scopes {key.scopes}) cannot open the pages: they need "
            "the read or manage scope.",
            "error",
        )
        return render_template("pages/login.html", next=request.form.get("next", "")), 403
    cookie.clear()
    with get_database().session(write=True) as session:
        cookie["session"] = keys.open_page_session(session=session, key=key)
    flash(f"Signed in as '{key.name}' ({key.scopes}).", "info")
    return redirect(safe_next(request.form.get("next")))


def lookup_key_for_pages(token: str):
    return lookup_key(current_app, token) if token else None


@bp.post("/logout")
def logout():
    signed_in = cookie.get("session")
    if signed_in is not None:
        with get_database().session(write=True) as session:
            keys.end_page_session(session=session, token=signed_in)
    cookie.clear()
    flash("Signed out.", "info")
    return redirect(url_for("pages.login"))


@bp.get("")
@bp.get("/")
def home():
    return redirect(url_for("pages.experiments"))


# -- experiments --------------------------------------------------------------------------------


@bp.get("/experiments")
def experiments():
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    text = _search_text()
    page = _page_number()
    items, total = overview.find_experiments(
        session=get_session(),
        status=status,
        text=text,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    rows = [(e, overview.headline(session=get_session(), experiment=e)) for e in items]
    return render_template(
        "pages/experiments.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        status=status,
        q=text or "",
        statuses=STATUSES,
    )


@bp.get("/experiments/<key:key>")
def experiment(key):
    session = get_session()
    found = repository.get_experiment(session=session, key=key)
    answer = experiment_results(session=session, key=key, metric=request.args.get("metric") or None)
    segment = request.args.get("segment") or ALL_SEGMENT
    history = overview.allocation_history(session=session, key=key)
    units = overview.units_over_time(session=session, key=key)
    return render_template(
        "pages/experiment.html",
        experiment=found,
        answer=answer,
        segment=segment,
        forest=figures.lift_forest(answer),
        densities=figures.rate_densities(answer, overview.rate_curves(answer, segment), segment),
        weights=figures.weight_history(history) if found.allocation == "thompson" else [],
        periods=history,
        units=figures.units_over_time(units),
        jobs=overview.analysis_jobs(session=session, key=key),
    )


@bp.get("/experiments/<key:key>/confirm/<action>")
@needs("manage")
def confirm(key, action):
    if action not in ACTIONS:
        abort(404)
    found = repository.get_experiment(session=get_session(), key=key)
    advice = None
    if action == "conclude":
        advice = experiment_results(session=get_session(), key=key)["recommendation"]
    return render_template("pages/confirm.html", experiment=found, action=action, advice=advice)


def _start(key):
    before = repository.get_experiment(session=get_session(), key=key).status
    found = workflows.start(session=get_session(), cache=get_snapshot_cache(), key=key)
    return f"Started: {before} → {found.status}, allocation period {found.current_period}."


def _pause(key):
    found = workflows.pause(session=get_session(), cache=get_snapshot_cache(), key=key)
    return f"Paused: status {found.status}; assignments answer 409 until it is resumed."


def _conclude(key):
    winner = request.form.get("winner") or None
    found = workflows.conclude(
        session=get_session(), cache=get_snapshot_cache(), key=key, winner=winner
    )
    return (
        f"Concluded: every unit now gets '{found.winner}'; the learnings were published "
        "to the registry."
    )


def _reweight(key):
    # The reweight writes through sessions of its own; the request's is opened after it.
    period = reweighting.reweight(database=get_database(), cache=get_snapshot_cache(), key=key)
    history = overview.allocation_history(session=get_session(), key=key)
    changes = []
    for segment, weights in period.weights.items():
        old = {
            v: series[-2]
            for v, series in history["weights"].get(segment, {}).items()
            if len(series) >= 2
        }
        moved = [
            f"{variant} {old[variant]:.2f}→{w:.2f}"
            for variant, w in weights.items()
            if variant in old and abs(old[variant] - w) >= 0.005
        ]
        changes.append(f"{segment}: {', '.join(moved) if moved else 'unchanged'}")
    return f"Reweighted: allocation period {period.number} opened. " + "; ".join(changes) + "."


ACTIONS = {"start": _start, "pause": _pause, "reweight": _reweight, "conclude": _conclude}


@bp.post("/experiments/<key:key>/<action>")
@needs("manage")
def act(key, action):
    if action not in ACTIONS:
        abort(404)
    try:
        message = ACTIONS[action](key)
    except KairosError as error:
        get_session().rollback()
        flash(error.message, "error")
    else:
        flash(message, "info")
    return redirect(url_for("pages.experiment", key=key))


@bp.get("/new-experiment")
@needs("manage")
def new_experiment():
    return render_template("pages/new_experiment.html", form=forms.EXAMPLE, errors={}, preview=None)


@bp.post("/new-experiment")
@needs("manage")
def create_experiment():
    checked = forms.check(request.form)
    preview = request.form.get("action") == "preview"
    if checked.errors or preview:
        status = 422 if checked.errors else 200
        return render_template(
            "pages/new_experiment.html",
            form=request.form,
            errors=checked.errors,
            preview=checked.spec,
        ), status
    try:
        created = workflows.create(session=get_session(), spec=checked.spec)
    except KairosError as error:
        return render_template(
            "pages/new_experiment.html",
            form=request.form,
            errors=forms.by_form_field(error.errors or {"key": [error.message]}),
            preview=None,
        ), error.status
    flash(
        f"Created '{created.key}' as a draft with {len(created.variants)} variants. "
        "Start it when the journey engine is ready.",
        "info",
    )
    return redirect(url_for("pages.experiment", key=created.key))


# -- analyses -----------------------------------------------------------------------------------


@bp.post("/experiments/<key:key>/analyses")
@needs("manage")
def run_analysis(key):
    try:
        job = submit(
            session=get_session(),
            key=key,
            method=request.form.get("method", ""),
            metric=request.form.get("metric") or None,
        )
    except KairosError as error:
        get_session().rollback()
        flash(error.message, "error")
        return redirect(url_for("pages.experiment", key=key))
    flash(f"Analysis {job.id} ({job.method} on {job.metric}) queued.", "info")
    return redirect(url_for("pages.analysis", key=key, job_id=job.id))


@bp.get("/experiments/<key:key>/analyses/<id:job_id>")
def analysis(key, job_id):
    job = overview.job_of_experiment(session=get_session(), key=key, job_id=job_id)
    plots = []
    if job.status == "succeeded" and job.result:
        if job.method == "factorial":
            plots = figures.factorial_effects(job.result)
        else:
            plots = figures.hierarchical_effects(job.result)
    return render_template("pages/analysis.html", key=key, job=job, plots=plots)


@bp.get("/experiments/<key:key>/analyses/<id:job_id>/status")
def analysis_status(key, job_id):
    """The job's progress, for the page's script that follows it."""
    job = overview.job_of_experiment(session=get_session(), key=key, job_id=job_id)
    return {"status": job.status, "progress": job.progress, "stage": job.stage}


@bp.post("/experiments/<key:key>/learnings")
@needs("manage")
def publish(key):
    try:
        published = publish_learnings(session=get_session(), key=key)
    except KairosError as error:
        get_session().rollback()
        flash(error.message, "error")
        return redirect(url_for("pages.experiment", key=key))
    flash(f"Published {len(published)} learning(s) from '{key}'.", "info")
    return redirect(url_for("pages.learnings_page", experiment=key))


# -- learnings ----------------------------------------------------------------------------------


def _learning_query() -> tuple[dict, dict]:
    """The registry's filters from the query string, checked by the API's query schema."""
    given = {k: v for k, v in request.args.items() if v.strip() and k != "tag"}
    tags = [t for t in request.args.getlist("tag") if t.strip()]
    if tags:
        given["tag"] = tags
    try:
        return LearningQuerySchema().load(given, unknown=EXCLUDE), {}
    except ValidationError as error:
        return {"sort": "-date"}, flatten_errors(error.messages)


def _search(query: dict, offset: int, limit: int):
    query = dict(query)
    sort = query.pop("sort", "-date")
    tags = tuple(query.pop("tag", ()))
    return search(
        session=get_session(),
        filters=Filters(tags=tags, **query),
        sort=sort,
        offset=offset,
        limit=limit,
    )


@bp.get("/learnings")
def learnings_page():
    query, errors = _learning_query()
    page = _page_number()
    items, total = _search(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template(
        "pages/learnings.html",
        items=[(item, figures.learning_bar(item)) for item in items],
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        args=request.args,
        errors=errors,
    )


@bp.get("/learnings.csv")
def learnings_csv():
    query, errors = _learning_query()
    if errors:
        abort(422)
    items, _ = _search(query, 0, 100_000)
    return Response(
        as_csv([as_record(item) for item in items]),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="learnings.csv"'},
    )


@bp.get("/learnings/evidence")
def evidence():
    try:
        query = EvidenceQuerySchema().load(
            {k: v for k, v in request.args.items() if v.strip()}, unknown=EXCLUDE
        )
    except ValidationError as error:
        return render_template(
            "pages/evidence.html", answer=None, plot=None, errors=flatten_errors(error.messages)
        ), 422
    answer = pooled_evidence(session=get_session(), **query)
    return render_template(
        "pages/evidence.html", answer=answer, plot=figures.evidence_forest(answer), errors={}
    )


# -- errors -------------------------------------------------------------------------------------


@bp.errorhandler(KairosError)
def domain_error(error: KairosError):
    return render_template("pages/error.html", code=error.status, message=error.message), (
        error.status
    )


@bp.errorhandler(400)
@bp.errorhandler(403)
@bp.errorhandler(404)
@bp.errorhandler(405)
@bp.errorhandler(422)
def http_error(error):
    messages = {
        403: "This key's scopes do not allow this page or action.",
        404: "There is nothing here.",
    }
    message = messages.get(error.code, error.description)
    return render_template("pages/error.html", code=error.code, message=message), error.code


def _page_number() -> int:
    """The `page` asked for: 1 if absent or unreadable, and within what an SQL integer holds
    (the API's rule: beyond the last page a page is empty, never an overflow)."""
    try:
        page = int(request.args.get("page") or 1)
    except ValueError:
        page = 1
    return min(max(page, 1), bounds.MAX_INTEGER)


def _search_text() -> str | None:
    """The `q` asked for, as the API takes free text (no control characters: PostgreSQL
    stores and compares no NUL)."""
    text = request.args.get("q", "").strip()[:200] or None
    if text is not None and bounds.text_problem(text):
        abort(400, description=f"q: {bounds.text_problem(text)}")
    return text
