"""The pages through the Flask client: sign in, scopes, CSRF, and every page's content."""

import csv
import io

import pytest
from markupsafe import escape
from sqlmodel import Session

from experiments.storage.tables import AnalysisJob
from tests.pages.conftest import csrf_of, sign_in
from tests.utils.assignments import assign_batch, set_conversions, start
from tests.utils.factories import FACTORIAL, experiment_body

GET_PAGES = [
    "/ui",
    "/ui/experiments",
    "/ui/experiments/onboarding-nudge",
    "/ui/experiments/onboarding-nudge/confirm/start",
    "/ui/new-experiment",
    "/ui/learnings",
    "/ui/learnings.csv",
    "/ui/learnings/evidence?metric=activated&factor=channel&level=push",
]
MANAGE_ONLY = ["/ui/new-experiment", "/ui/experiments/onboarding-nudge/confirm/start"]
READ_PAGES = [p for p in GET_PAGES if p not in MANAGE_ONLY and p != "/ui"]
ACTIONS = ["start", "pause", "reweight", "conclude", "learnings", "analyses"]


@pytest.fixture
def running(client, keys):
    """onboarding-nudge, running, with 400 units and some activations."""
    start(client, keys, experiment_body())
    units = [{"unit_id": f"u{i}", "attributes": {"days_since_signup": i % 30}} for i in range(400)]
    assign_batch(client, keys["assign"], "onboarding-nudge", units)
    return "onboarding-nudge"


def converted(database, rates):
    with database.session(write=True) as session:
        set_conversions(session, "onboarding-nudge", "activated", rates)


# -- signing in ----------------------------------------------------------------------------------


def test_every_page_asks_to_sign_in_first(client, running):
    for path in GET_PAGES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.location.startswith("/ui/login?next="), path


def test_every_page_route_needs_a_signed_in_key(app, client, running):
    """Every rule under /ui but the sign-in form and the static files: a GET is sent to sign
    in, a POST is refused; none answers 2xx or 5xx without a session."""
    values = {"key": "onboarding-nudge", "action": "start", "job_id": "1"}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/ui") or rule.endpoint in ("pages.login", "pages.static"):
            continue
        arguments = {name: values[name] for name in rule.arguments}
        path = app.url_map.bind("localhost").build(rule.endpoint, arguments)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method)
            if method == "GET":
                assert response.status_code == 302, (method, path)
                assert response.location.startswith("/ui/login"), (method, path)
            else:
                assert 300 <= response.status_code < 500, (method, path, response.status_code)


def test_signing_in_sets_a_signed_httponly_samesite_cookie_under_ui_only(client, tokens):
    response = sign_in(client, tokens["read"])
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("kairos_ui=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert tokens["read"] not in cookie
    assert response.location == "/ui/experiments"
    assert client.get("/ui/experiments").status_code == 200


def test_signing_in_follows_next_within_the_pages_only(client, tokens):
    data = {"token": tokens["read"], "csrf_token": csrf_of(client), "next": "https://evil.test/"}
    assert client.post("/ui/login", data=data).location == "/ui/experiments"
    client.post("/ui/logout", data={"csrf_token": csrf_of(client, "/ui/experiments")})
    data = {"token": tokens["read"], "csrf_token": csrf_of(client), "next": "/ui/learnings"}
    assert client.post("/ui/login", data=data).location == "/ui/learnings"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/",
        "//evil.test/ui",
        "/ui/../../health",
        "/ui/%2e%2e/health",
        "/ui\\..\\health",
        "/ui/experiments\r\nSet-Cookie: x=1",
        "/ui/\x00",
        "/uix",
    ],
)
def test_next_never_leaves_the_pages_nor_breaks_the_redirect(client, tokens, target):
    data = {"token": tokens["read"], "csrf_token": csrf_of(client), "next": target}
    assert client.post("/ui/login", data=data).location == "/ui/experiments"
    # Signed in, the sign-in page sends on to `next` too.
    assert client.get("/ui/login", query_string={"next": target}).location == "/ui/experiments"


@pytest.mark.parametrize("token", ["é", "\u2603" * 40, "\x00", "x" * 5000, ""])
def test_a_form_token_of_any_characters_is_refused_as_a_400_page(client, tokens, token):
    for path in ("/ui/login", "/ui/logout"):
        response = client.post(path, data={"token": tokens["read"], "csrf_token": token})
        assert response.status_code == 400, (path, response.status_code)
        assert "security token" in response.text


def test_signed_in_pages_are_not_cached_nor_framed(signed_in):
    for path in ("/ui/experiments", "/ui/learnings", "/ui/login"):
        response = signed_in("read").get(path)
        assert response.headers["Cache-Control"] == "no-store", path
        assert response.headers["X-Frame-Options"] == "DENY", path


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_another_method_on_a_page_is_a_405_page_whatever_its_body(signed_in, method):
    response = signed_in("read").open("/ui/login", method=method, data="x=1")
    assert response.status_code == 405
    assert response.content_type.startswith("text/html")


def test_signing_out_ends_the_session_on_the_server(app, tokens):
    """A copy of the cookie taken while signed in opens nothing once the session signed out
    (the cookie was the signed key id alone, replayable after signing out)."""
    browser = app.test_client()
    sign_in(browser, tokens["read"])
    copied = browser.get_cookie("kairos_ui", path="/ui").value
    browser.post("/ui/logout", data={"csrf_token": csrf_of(browser, "/ui/experiments")})
    thief = app.test_client()
    thief.set_cookie("kairos_ui", copied, path="/ui")
    response = thief.get("/ui/experiments")
    assert response.status_code == 302 and response.location.startswith("/ui/login")
    # Another session of the same key stays signed in.
    other = app.test_client()
    sign_in(other, tokens["read"])
    assert other.get("/ui/experiments").status_code == 200


def test_a_wrong_key_is_refused(client):
    response = client.post(
        "/ui/login", data={"token": "kairos_nope", "csrf_token": csrf_of(client)}
    )
    assert response.status_code == 401
    assert "not valid" in response.get_data(as_text=True)
    assert client.get("/ui/experiments").status_code == 302


def test_an_assign_only_key_cannot_open_the_pages(client, tokens):
    response = client.post(
        "/ui/login", data={"token": tokens["assign"], "csrf_token": csrf_of(client)}
    )
    assert response.status_code == 403
    assert "read or manage scope" in response.get_data(as_text=True)
    assert client.get("/ui/experiments").status_code == 302


def test_signing_out_ends_the_session(signed_in):
    client = signed_in("read")
    response = client.post("/ui/logout", data={"csrf_token": csrf_of(client, "/ui/experiments")})
    assert response.location == "/ui/login"
    assert client.get("/ui/experiments").status_code == 302


def test_a_revoked_key_is_signed_out(signed_in, database):
    from experiments.keys import revoke_keys

    client = signed_in("read")
    with database.session(write=True) as session:
        revoke_keys(session=session, name_or_id="read-key")
    assert client.get("/ui/experiments").status_code == 302


def test_the_api_sets_no_cookie_and_ignores_the_pages_one(signed_in, keys):
    client = signed_in("read")
    response = client.get("/v1/experiments")  # the cookie is sent, the bearer token is not
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    response = client.get("/v1/experiments", headers=keys["read"])
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


# -- CSRF ----------------------------------------------------------------------------------------


def test_a_post_without_the_form_token_is_refused(client, tokens):
    assert client.post("/ui/login", data={"token": tokens["read"]}).status_code == 400
    assert client.get("/ui/experiments").status_code == 302


def test_an_action_without_the_form_token_changes_nothing(signed_in, running, client, keys):
    page = signed_in("manage")
    for action in ACTIONS:
        response = page.post(f"/ui/experiments/{running}/{action}", data={"method": "factorial"})
        assert response.status_code == 400, action
        assert "security token" in response.get_data(as_text=True)
        response = page.post(
            f"/ui/experiments/{running}/{action}",
            data={"csrf_token": "forged", "method": "factorial"},
        )
        assert response.status_code == 400, action
    assert (
        client.get(f"/v1/experiments/{running}", headers=keys["read"]).json["status"] == "running"
    )


def test_creating_without_the_form_token_stores_nothing(signed_in, client, keys):
    page = signed_in("manage")
    response = page.post("/ui/new-experiment", data={"key": "x", "metrics": "m binary primary"})
    assert response.status_code == 400
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


# -- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["read", "manage", "admin"])
def test_every_reading_page_opens_for_read_manage_and_admin(signed_in, running, scope):
    page = signed_in(scope)
    for path in READ_PAGES:
        assert page.get(path).status_code == 200, path
    for path in MANAGE_ONLY:
        assert page.get(path).status_code == (403 if scope == "read" else 200), path


def test_a_read_key_cannot_open_manage_pages(signed_in, running):
    page = signed_in("read")
    for path in MANAGE_ONLY:
        response = page.get(path)
        assert response.status_code == 403
        assert "scopes do not allow" in response.get_data(as_text=True)


def test_a_read_key_cannot_act(signed_in, running, client, keys):
    page = signed_in("read")
    token = csrf_of(page, "/ui/experiments")
    for action in ACTIONS:
        response = page.post(
            f"/ui/experiments/{running}/{action}",
            data={"csrf_token": token, "method": "factorial"},
        )
        assert response.status_code == 403, action
    assert (
        client.get(f"/v1/experiments/{running}", headers=keys["read"]).json["status"] == "running"
    )


def test_a_read_key_sees_no_manage_buttons(signed_in, running):
    html = signed_in("read").get(f"/ui/experiments/{running}").get_data(as_text=True)
    for needle in ("/confirm/", "Publish learnings", "Run analysis", "New experiment"):
        assert needle not in html


def test_a_manage_key_sees_the_buttons_its_state_allows(signed_in, running):
    html = signed_in("manage").get(f"/ui/experiments/{running}").get_data(as_text=True)
    for needle in ("confirm/pause", "confirm/conclude", "Publish learnings", "Run analysis"):
        assert needle in html
    assert "confirm/start" not in html
    assert "confirm/reweight" not in html  # a fixed split


# -- experiments ---------------------------------------------------------------------------------


def test_the_list_shows_status_units_leader_recommendation_and_flags(signed_in, running, database):
    converted(database, {"morning-push": 0.05, "evening-email": 0.15})
    html = signed_in("read").get("/ui/experiments").get_data(as_text=True)
    assert "onboarding-nudge" in html and "running" in html and "fixed" in html
    assert ">400<" in html
    assert "evening-email" in html
    assert 'class="action' in html


def test_the_list_filters_by_status_and_text(signed_in, running, client, keys):
    client.post("/v1/experiments", json=experiment_body(FACTORIAL), headers=keys["manage"])
    page = signed_in("read")
    assert "renewal-reminder" not in page.get("/ui/experiments?status=running").text
    html = page.get("/ui/experiments?q=RENEWAL").text
    assert "renewal-reminder" in html and "onboarding-nudge" not in html
    assert "1 experiment." in html


def test_a_long_list_pages_and_its_links_keep_the_filters(signed_in, client, keys):
    for i in range(26):
        body = experiment_body(key=f"nudge-{i:02d}", name=f"Nudge {i}")
        assert client.post("/v1/experiments", json=body, headers=keys["manage"]).status_code == 201
    page = signed_in("read")
    first = page.get("/ui/experiments?status=draft&q=nudge").text
    assert "page 1 of 2" in first and "Previous" not in first
    assert "/ui/experiments?page=2&amp;status=draft&amp;q=nudge" in first
    second = page.get("/ui/experiments?status=draft&q=nudge&page=2").text
    assert "page 2 of 2" in second and "Next" not in second
    assert "/ui/experiments?page=1&amp;status=draft&amp;q=nudge" in second


def test_the_experiment_page_shows_design_results_and_plots(signed_in, running, database):
    converted(database, {"morning-push": 0.05, "evening-email": 0.15})
    html = signed_in("read").get(f"/ui/experiments/{running}").text
    assert "A friendly morning push" in html  # the hypothesis
    assert "days_since_signup lt 14" in html
    assert "21:00 to 8:00" in html and "5.0%" in html  # quiet hours, holdout
    assert "Recommendation:" in html and "Sample ratio" in html and "Guardrails" in html
    assert "unsubscribed (margin 0.002)" in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 3
    assert "<title" in html and "Lift vs control on activated, per segment" in html
    assert "Segment: newcomers" in html and "Segment: all" in html
    assert "Posterior of each arm" in html
    assert "Cumulative units assigned" in html
    assert "A fixed split" in html


def test_another_metric_and_segment_can_be_chosen(signed_in, running):
    html = signed_in("read").get(f"/ui/experiments/{running}?metric=unsubscribed&segment=other")
    assert html.status_code == 200
    assert "Results on unsubscribed" in html.text and "segment other" in html.text


def test_an_unknown_metric_is_an_error_page(signed_in, running):
    response = signed_in("read").get(f"/ui/experiments/{running}?metric=nope")
    assert response.status_code == 422
    assert "Unknown metric" in response.text


def test_an_unknown_experiment_is_a_404_page(signed_in):
    response = signed_in("read").get("/ui/experiments/nope")
    assert response.status_code == 404
    assert "No experiment with key" in response.text and "<html" in response.text


@pytest.mark.parametrize("path", ["/ui/nope", "/ui/experiments/x/y/z", "/ui/learnings/1/2"])
def test_a_url_no_page_matches_is_a_404_page_and_the_api_stays_json(signed_in, client, path):
    response = signed_in("read").get(path)
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")
    assert "There is nothing here." in response.text
    assert client.delete("/ui/login").content_type.startswith("text/html")
    for elsewhere in ("/v1/nope", "/uix"):
        answer = client.get(elsewhere)
        assert answer.status_code == 404 and answer.json["code"] == 404


def test_a_bandit_page_shows_its_weights_per_segment_over_periods(signed_in, client, keys):
    body = experiment_body(FACTORIAL, bandit={"min_units_per_arm": 5})
    start(client, keys, body)
    units = [{"unit_id": f"u{i}"} for i in range(200)]
    assign_batch(client, keys["assign"], body["key"], units)
    page = signed_in("manage")
    token = csrf_of(page, f"/ui/experiments/{body['key']}/confirm/reweight")
    response = page.post(f"/ui/experiments/{body['key']}/reweight", data={"csrf_token": token})
    html = page.get(response.location).text
    assert "Reweighted: allocation period 2 opened." in html
    assert "Allocation weights in segment other, by period" in html
    assert "2 periods" in html


# -- lifecycle actions ---------------------------------------------------------------------------


def test_a_draft_shows_no_rates_before_any_unit(signed_in, client, keys):
    """With no units a row's rate would be the prior's (50%): the page says there are none."""
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    html = signed_in("read").get("/ui/experiments/onboarding-nudge").text
    assert "no units yet" in html and "50.0%" not in html
    assert "1.0% of the control's rate" in html


def test_the_form_takes_the_relative_threshold(signed_in, client, keys):
    response = post_form(signed_in("manage"), action="create", relative_threshold_of_caring="0.02")
    assert response.status_code == 302, response.text
    stored = client.get("/v1/experiments/winback", headers=keys["read"]).json
    assert stored["relative_threshold_of_caring"] == 0.02


def test_start_pause_and_conclude_each_say_what_changed(signed_in, client, keys):
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    page = signed_in("manage")
    key = "onboarding-nudge"
    html = page.get(f"/ui/experiments/{key}/confirm/start").text
    assert "Start onboarding-nudge?" in html
    token = csrf_of(page, f"/ui/experiments/{key}/confirm/start")
    response = page.post(f"/ui/experiments/{key}/start", data={"csrf_token": token})
    assert "Started: draft → running, allocation period 1." in page.get(response.location).text
    response = page.post(f"/ui/experiments/{key}/pause", data={"csrf_token": token})
    assert "Paused: status paused" in page.get(response.location).text
    html = page.get(f"/ui/experiments/{key}/confirm/conclude").text
    assert '<select id="winner" name="winner" required>' in html
    assert "The results say:" in html
    # Concluding is final: never the control by default; with no data, no leader either.
    assert '<option value="" selected disabled>Choose the variant' in html
    assert 'value="morning-push" selected' not in html
    response = page.post(
        f"/ui/experiments/{key}/conclude", data={"csrf_token": token, "winner": "evening-email"}
    )
    html = page.get(response.location).text
    assert "Concluded: every unit now gets &#39;evening-email&#39;" in html
    assert client.get(f"/v1/experiments/{key}", headers=keys["read"]).json["winner"] == (
        "evening-email"
    )


def test_a_refused_action_says_why(signed_in, running):
    page = signed_in("manage")
    token = csrf_of(page, "/ui/experiments")
    response = page.post(f"/ui/experiments/{running}/reweight", data={"csrf_token": token})
    assert "fixed split: there is nothing to reweight" in page.get(response.location).text


def test_an_unknown_action_is_a_404(signed_in, running):
    page = signed_in("manage")
    token = csrf_of(page, "/ui/experiments")
    assert page.post(
        f"/ui/experiments/{running}/explode", data={"csrf_token": token}
    ).status_code == (404)
    assert page.get(f"/ui/experiments/{running}/confirm/explode").status_code == 404


# -- the new-experiment form ---------------------------------------------------------------------

FORM = {
    "key": "winback",
    "name": "Win-back",
    "allocation": "thompson",
    "stickiness": "unit",
    "factors": "timing: morning, evening\ntone: friendly, urgent",
    "segments": "lapsed: days_inactive gte 30\nvip: tier in gold, platinum",
    "metrics": "returned binary primary\nunsubscribed binary guardrail 0.002",
    "holdout": "0.05",
    "quiet_start": "21",
    "quiet_end": "8",
    "bandit_min_units_per_arm": "50",
    "prior": "default",
}


def post_form(page, **changes):
    data = {**FORM, **changes, "csrf_token": csrf_of(page, "/ui/new-experiment")}
    return page.post("/ui/new-experiment", data=data)


def test_the_form_creates_the_factorial_as_the_api_would(signed_in, client, keys):
    page = signed_in("manage")
    response = post_form(page, action="create")
    assert response.status_code == 302 and response.location == "/ui/experiments/winback"
    stored = client.get("/v1/experiments/winback", headers=keys["read"]).json
    assert [v["key"] for v in stored["variants"]] == [
        "timing=morning,tone=friendly",
        "timing=morning,tone=urgent",
        "timing=evening,tone=friendly",
        "timing=evening,tone=urgent",
    ]
    assert stored["segments"][1]["rule"] == {
        "attribute": "tier",
        "op": "in",
        "value": ["gold", "platinum"],
    }
    assert stored["metrics"][1]["margin"] == 0.002
    assert stored["quiet_hours"] == {"start": 21, "end": 8}
    assert stored["bandit"]["min_units_per_arm"] == 50
    assert stored["status"] == "draft"
    assert (
        "Created &#39;winback&#39; as a draft with 4 variants" in page.get(response.location).text
    )


def test_variants_are_listed_one_a_line_with_factors_weight_and_payload(signed_in, client, keys):
    variants = (
        "morning-email timing=morning channel=email weight=0.4\n"
        'evening-push timing=evening channel=push weight=0.6 {"send": {"local_hour": 19}}\n'
    )
    response = post_form(signed_in("manage"), action="create", factors="", variants=variants)
    assert response.status_code == 302, response.text
    stored = client.get("/v1/experiments/winback", headers=keys["read"]).json
    assert [(v["key"], v["factors"], v["payload"]) for v in stored["variants"]] == [
        ("morning-email", {"timing": "morning", "channel": "email"}, {}),
        ("evening-push", {"timing": "evening", "channel": "push"}, {"send": {"local_hour": 19}}),
    ]
    assert [v["weight"] for v in stored["variants"]] == pytest.approx([0.4, 0.6])


def test_the_preview_lists_the_generated_variants_and_stores_nothing(signed_in, client, keys):
    response = post_form(signed_in("manage"), action="preview")
    assert response.status_code == 200
    assert "Preview: 4 variants" in response.text
    assert "timing=evening,tone=urgent" in response.text
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "Win Back"}, "key", "Must be a slug"),
        ({"holdout": "0.9"}, "holdout", "less than or equal to 0.5"),
        ({"holdout": "lots"}, "holdout", "Not a valid number"),
        ({"quiet_start": "25"}, "quiet_start", "less than or equal to 23"),
        ({"bandit_min_weight": "0.7"}, "bandit_min_weight", "0.5"),
        ({"metrics": "returned binary sometimes"}, "metrics", "Line 1 (role): Must be one of"),
        ({"metrics": ""}, "metrics", "Length must be between 1 and 50"),
        ({"segments": "lapsed: days_inactive like 30"}, "segments", "Line 1 (rule.op)"),
        ({"segments": "lapsed days_inactive"}, "segments", "write &#39;segment: attribute op"),
        ({"control": "nope"}, "control", "&#39;nope&#39; is not one of the variants"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"variants": "[{"}, "variants", "Not valid JSON"),
        ({"variants": "a\nb timing"}, "variants", "Line 2: &#39;timing&#39; is not"),
        ({"variants": "a {nope"}, "variants", "Line 1: the payload is not a JSON object"),
        ({"variants": "a weight=heavy\nb"}, "variants", "Line 1 (weight): Not a valid number"),
        ({"variants": "a\na"}, "variants", "Duplicate"),
        ({"variants": "a t=x t=y\nb t=z"}, "variants", "Line 1: the factor &#39;t&#39; is given"),
        ({"factors": "a: x, y\na: p, q"}, "factors", "Line 2: the factor &#39;a&#39; is listed"),
        ({"variants": "[" * 5000 + "]" * 5000}, "variants", "Not valid JSON"),
        ({"variants": "a " + "{" * 5000}, "variants", "the payload is not a JSON object"),
        ({"variants": '[{"key": "a", "payload": {"x": "\\ud800"}}]'}, "variants", "Not valid JSON"),
        ({"variants": 'a {"x": "\\ud800"}\nb'}, "variants", "the payload is not a JSON object"),
        ({"segments": "s: a eq 1\n" * 1001}, "segments", "At most 1,000 lines."),
        ({"factors": "f: x, y\n" * 5000}, "factors", "At most 1,000 lines."),
    ],
)
def test_errors_are_shown_beside_their_field(signed_in, client, keys, changes, field, message):
    response = post_form(signed_in("manage"), action="create", **changes)
    assert response.status_code == 422
    html = response.text
    errors = html.split(f'id="{field}-errors"', 1)
    assert len(errors) == 2, f"no errors beside {field}"
    assert message in errors[1].split("</ul>", 1)[0]
    assert f'aria-describedby="{field}-hint {field}-errors"' in html or (
        f'aria-describedby="{field}-errors"' in html
    )
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


def test_the_form_keeps_what_was_typed_after_an_error(signed_in):
    html = post_form(signed_in("manage"), action="create", key="Win Back").text
    assert 'value="Win Back"' in html
    assert "vip: tier in gold, platinum" in html


def test_a_duplicate_key_is_an_error_beside_the_key(signed_in):
    page = signed_in("manage")
    post_form(page, action="create")
    response = post_form(page, action="create")
    assert response.status_code == 409
    assert "already exists" in response.text.split('id="key-errors"', 1)[1]


# -- analyses ------------------------------------------------------------------------------------


def test_running_an_analysis_queues_it_and_follows_its_progress(signed_in, running):
    page = signed_in("manage")
    token = csrf_of(page, f"/ui/experiments/{running}")
    response = page.post(
        f"/ui/experiments/{running}/analyses",
        data={"csrf_token": token, "method": "hierarchical", "metric": "activated"},
    )
    assert response.location == f"/ui/experiments/{running}/analyses/1"
    html = page.get(response.location).text
    assert "Analysis 1: hierarchical on activated" in html
    assert "poll.js" in html and "<progress" in html
    status = page.get(f"/ui/experiments/{running}/analyses/1/status").json
    assert status == {"status": "queued", "progress": 0.0, "stage": "queued"}
    assert (
        "Analysis 1</a>: hierarchical on activated" in page.get(f"/ui/experiments/{running}").text
    )


def test_an_analysis_that_cannot_run_says_why(signed_in, running):
    page = signed_in("manage")
    token = csrf_of(page, f"/ui/experiments/{running}")
    response = page.post(
        f"/ui/experiments/{running}/analyses",
        data={"csrf_token": token, "method": "factorial", "metric": "activated"},
    )
    assert "Not a factorial design" in page.get(response.location).text


FACTORIAL_RESULT = {
    "segments": [
        {
            "segment": "all",
            "units": 800,
            "main_effects": [
                {
                    "factor": "channel",
                    "level": "push",
                    "baseline_level": "email",
                    "log_odds": {"mean": 0.3, "ci": [-0.2, 0.7]},
                    "lift": {"mean": 0.23, "ci": [-0.1, 0.6]},
                    "prob_better": 0.9,
                }
            ],
            "interactions": [
                {
                    "factors": ["timing", "tone"],
                    "levels": ["evening", "urgent"],
                    "log_odds": {"mean": 0.1, "ci": [-0.5, 0.6]},
                    "prob_positive": 0.62,
                }
            ],
        }
    ],
    "baseline": {"timing": "morning", "tone": "friendly", "channel": "email"},
    "diagnostics": {"max_rhat": 1.006, "min_ess": 825, "divergences": 0, "converged": True},
    "sampler": {"name": "nutpie", "draws": 600, "tune": 500, "chains": 4, "seed": 1},
}


def test_a_finished_analysis_shows_its_plots_and_diagnostics(signed_in, running, database):
    with Session(database.engine) as session:
        job = AnalysisJob(
            experiment_id=1,
            method="factorial",
            metric="activated",
            status="succeeded",
            progress=1.0,
            stage="succeeded",
            result=FACTORIAL_RESULT,
        )
        session.add(job)
        session.commit()
    html = signed_in("read").get(f"/ui/experiments/{running}/analyses/1").text
    assert "Diagnostics: converged" in html and "1.006" in html
    assert "Main effect of each factor level, segment all" in html
    assert "channel=push (vs email)" in html
    assert "Two-way interactions, segment all" in html
    assert "poll.js" not in html


def test_an_analysis_of_another_experiment_is_not_found(signed_in, running):
    assert signed_in("read").get(f"/ui/experiments/{running}/analyses/9").status_code == 404


# -- learnings -----------------------------------------------------------------------------------


@pytest.fixture
def published(signed_in, running, database):
    converted(database, {"morning-push": 0.05, "evening-email": 0.30})
    page = signed_in("manage")
    token = csrf_of(page, f"/ui/experiments/{running}")
    response = page.post(f"/ui/experiments/{running}/learnings", data={"csrf_token": token})
    assert response.location == f"/ui/learnings?experiment={running}"
    assert "Published 9 learning(s)" in page.get(response.location).text
    return page


def test_learnings_show_summary_verdict_interval_bar_and_links(published):
    html = published.get("/ui/learnings?experiment=onboarding-nudge").text
    assert "9 learnings." in html
    assert 'class="verdict win"' in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 9
    assert 'href="/ui/experiments/onboarding-nudge"' in html
    assert "/ui/learnings/evidence?segment=newcomers&amp;metric=activated" in html


def test_a_learning_shows_its_notes_beside_its_verdict(published, client, keys):
    """Why a learning reads as it does (e.g. an inconclusive one that looks strong, not a
    discovery at the publication's false-discovery rate) is on the page, not only in the CSV."""
    found = client.get(
        "/v1/learnings", query_string={"experiment": "onboarding-nudge"}, headers=keys["read"]
    ).json
    noted = [x for x in found if x["notes"]]
    assert noted
    html = published.get("/ui/learnings?experiment=onboarding-nudge").text
    for learning in noted:
        for note in learning["notes"].splitlines():
            assert escape(note) in html


def test_learnings_filter_and_search(published):
    assert "3 learnings." in published.get("/ui/learnings?segment=newcomers").text
    assert "0 learnings." in published.get("/ui/learnings?q=nothingmatchesthis").text
    # The experiment's hypothesis (searched too) mentions newcomers.
    assert "9 learnings." in published.get("/ui/learnings?q=newcomers&sort=-lift").text
    assert "3 learnings." in published.get("/ui/learnings?q=newcomers&segment=other").text


def test_a_bad_filter_says_which(published):
    html = published.get("/ui/learnings?since=yesterday").text
    assert "since:" in html and 'role="alert"' in html


def test_the_csv_export_has_every_learning_the_filters_pick(published):
    response = published.get("/ui/learnings.csv?segment=newcomers")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.text.strip().splitlines()
    assert lines[0].startswith("id,source,experiment_key") and ",notes,note_codes,tags," in lines[0]
    assert len(lines) == 4 and all(",newcomers," in line for line in lines[1:])


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_the_csv_export_runs_no_formula_a_client_wrote(signed_in, client, keys, start):
    formula = f'{start}HYPERLINK("http://evil.test","click")'
    body = {"summary": formula, "tags": [f"{start}cmd|' /C calc'!A0"]}
    assert client.post("/v1/learnings", json=body, headers=keys["manage"]).status_code == 201
    (row,) = csv.DictReader(io.StringIO(signed_in("read").get("/ui/learnings.csv").text))
    assert row["summary"] == "'" + formula
    assert row["tags"].startswith("'")


def test_the_evidence_page_draws_the_meta_analysis(published):
    html = published.get(
        "/ui/learnings/evidence?segment=all&metric=activated&factor=variant&level=evening-email"
    ).text
    assert "Evidence for variant=evening-email on activated, segment all" in html
    assert "Evidence for variant=evening-email on activated in segment all, by experiment" in html
    assert "I²" in html and "τ" in html and "pooled" in html
    assert 'href="/ui/experiments/onboarding-nudge"' in html


def test_the_evidence_page_without_its_fields_says_which(published):
    response = published.get("/ui/learnings/evidence?segment=all")
    assert response.status_code == 422
    assert "metric:" in response.text


def test_behind_tls_the_cookie_can_be_marked_secure(app, tokens):
    app.config["KAIROS_UI_COOKIE_SECURE"] = True
    client = app.test_client()
    assert "Secure" in sign_in(client, tokens["read"]).headers["Set-Cookie"]


@pytest.mark.parametrize("page", ["99999999999999999999999", str(2**63), "-5", "x", "1e9"])
def test_any_page_number_answers_a_page(signed_in, running, page):
    reader = signed_in("read")
    for path in ("/ui/experiments", "/ui/learnings"):
        assert reader.get(path, query_string={"page": page}).status_code == 200, (path, page)


@pytest.mark.parametrize("text", ["\x00", "a\x1bb", "\x7f", "\x9b"])
def test_a_search_with_control_characters_is_refused_clearly(signed_in, running, text):
    response = signed_in("read").get("/ui/experiments", query_string={"q": text})
    assert response.status_code == 400
    assert "q: Must contain no control characters" in response.text
