"""End to end, in a real browser: a growth team signs in, creates an experiment through the form
(a field error shown and corrected), starts it; a journey engine sends assignments and outcomes
through the API; the team reads the forest plot, runs a factorial analysis and sees its result,
publishes learnings; an analyst searches the registry and opens the evidence plot. Every page
passes axe-core with no serious or critical violation, and each step leaves a screenshot.
"""

import re
import threading

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from api.db import get_database
from experiments.analysis_jobs import JobSettings, Worker

SERIOUS = ("serious", "critical")
AXE = Axe()


def accessible(page, name: str) -> None:
    results = AXE.run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in SERIOUS]
    described = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in bad
    ]
    assert not bad, f"axe on {name}: " + "; ".join(described)


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/ui")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible()


def send_traffic(base: str, tokens: dict, key: str) -> None:
    """The journey engine: 1,200 users through the API, and their activations."""
    engine = {"Authorization": f"Bearer {tokens['assign']}"}
    units = [
        {"unit_id": f"user-{i}", "attributes": {"days_since_signup": i % 30}} for i in range(1200)
    ]
    answer = requests.post(
        f"{base}/v1/assignments/batch",
        json={"experiment": key, "units": units},
        headers=engine,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    events = [
        {
            "event_id": f"act-{a['unit_id']}",
            "experiment": key,
            "unit_id": a["unit_id"],
            "metric": "activated",
        }
        for i, a in enumerate(answer.json()["assignments"])
        if a["variant"] and (i % (7 if "push" in a["variant"] else 13) == 0)
    ]
    answer = requests.post(
        f"{base}/v1/outcomes/batch", json={"events": events}, headers=engine, timeout=30
    )
    assert answer.status_code == 202, answer.text


@pytest.mark.slow
def test_a_growth_team_runs_an_experiment_in_the_browser(page, served, served_tokens, artifacts):
    base, app = served
    sign_in(page, base, served_tokens["manage"])
    accessible(page, "experiments (empty)")

    # The form: a key that is not a slug is refused beside the field, then corrected.
    page.get_by_role("link", name="New experiment").click()
    page.get_by_label("Key", exact=True).fill("Onboarding Nudge")
    page.get_by_label("Name").fill("Onboarding nudge")
    page.get_by_label("Hypothesis").fill("Newcomers activate more after a morning push.")
    page.get_by_label("Factors").fill("timing: morning, evening\nchannel: email, push")
    page.get_by_label("Segments").fill("newcomers: days_since_signup lt 14")
    page.get_by_label("Reweight every (seconds)").fill("3600")
    page.get_by_label("Units per arm before reweighting").fill("50")
    page.get_by_role("button", name="Create experiment").click()
    error = page.locator("#key-errors")
    expect(error).to_contain_text("Must be a slug")
    expect(page.get_by_label("Key", exact=True)).to_have_attribute("aria-invalid", "true")
    accessible(page, "new experiment with an error")
    shot(page, artifacts, "new-experiment-error")
    page.get_by_label("Key", exact=True).fill("onboarding-nudge")
    page.get_by_role("button", name="Preview variants").click()
    expect(page.get_by_role("heading", name="Preview: 4 variants")).to_be_visible()
    page.get_by_role("button", name="Create experiment").click()
    expect(page.locator(".flash.info")).to_contain_text("Created 'onboarding-nudge' as a draft")

    # Start it, confirmed.
    page.get_by_role("link", name="Start").click()
    page.get_by_role("button", name="Yes, start").click()
    expect(page.locator(".flash.info")).to_contain_text("Started: draft → running")

    send_traffic(base, served_tokens, "onboarding-nudge")
    page.reload()
    forest = page.locator("svg[role=img]").filter(has_text="Lift vs control on activated")
    expect(forest).to_be_visible()
    expect(page.get_by_text("Posterior of each arm")).to_have_count(1)
    accessible(page, "experiment")
    shot(page, artifacts, "experiment")

    # A factorial analysis, run by a worker while the page follows its progress.
    page.get_by_label("Model").select_option("factorial")
    page.get_by_role("button", name="Run analysis").click()
    expect(page.get_by_role("heading", name=re.compile("Analysis 1: factorial"))).to_be_visible()
    accessible(page, "analysis in progress")
    with app.app_context():
        database = get_database()
    worker = Worker(database, settings=JobSettings(draws=100, tune=100, chains=2))
    finished = []
    runner = threading.Thread(target=lambda: finished.append(worker.run_once()))
    runner.start()
    expect(page.get_by_role("heading", name=re.compile("Diagnostics"))).to_be_visible(
        timeout=180_000
    )
    runner.join()
    assert finished == ["succeeded"]
    expect(
        page.locator("svg[role=img]").filter(has_text="Main effect of each factor level").first
    ).to_be_visible()
    accessible(page, "analysis result")
    shot(page, artifacts, "analysis")

    # Publish what it learned; search the registry; open the evidence plot.
    page.get_by_role("link", name="← onboarding-nudge").click()
    page.get_by_role("button", name="Publish learnings").click()
    expect(page.locator(".flash.info")).to_contain_text("learning(s) from 'onboarding-nudge'")
    page.get_by_label("Text").fill("newcomers")
    page.get_by_label("Factor").fill("channel")
    page.get_by_label("Metric").fill("activated")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("ul.learnings li").first).to_be_visible()
    accessible(page, "learnings")
    shot(page, artifacts, "learnings")
    page.get_by_role("link", name=re.compile("evidence across experiments")).first.click()
    expect(page.locator("svg[role=img]").filter(has_text="by experiment, pooled")).to_be_visible()
    accessible(page, "evidence")
    shot(page, artifacts, "evidence")

    # Conclude with a winner; the list says so.
    page.get_by_role("link", name="onboarding-nudge").first.click()
    page.get_by_role("link", name="Conclude").click()
    page.get_by_label("Winner").select_option("timing=morning,channel=push")
    page.get_by_role("button", name="Yes, conclude").click()
    expect(page.locator(".flash.info")).to_contain_text("every unit now gets")
    page.get_by_role("link", name="Experiments").click()
    expect(page.locator("span.status.concluded")).to_be_visible()
    accessible(page, "experiments")
    shot(page, artifacts, "experiments")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    accessible(page, "sign in")


def test_an_analyst_reads_but_sees_no_buttons(page, served, served_tokens):
    base, _ = served
    sign_in(page, base, served_tokens["read"])
    expect(page.get_by_role("link", name="New experiment")).to_have_count(0)
    page.goto(f"{base}/ui/new-experiment")
    expect(page.get_by_role("heading", name=re.compile("403"))).to_be_visible()
    accessible(page, "403")
