"""The `kairos` command line: keys and database commands, against a real database."""

from click.testing import CliRunner

from api.cli import main
from tests.pg import free_port


def token_of(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_help_lists_the_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "keys", "db"):
        assert command in result.output


def test_keys_create_prints_the_token_alone_on_the_last_stdout_line(runner, client):
    result = runner.invoke(main, ["keys", "create", "journeys", "--scopes", "assign,read"])
    assert result.exit_code == 0, result.output
    token = token_of(result)
    assert token.startswith("kairos_")
    assert " " not in token
    assert "journeys" in result.stderr
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/experiments", headers=headers).status_code == 200
    assert client.post("/v1/experiments", json={}, headers=headers).status_code == 403


def test_keys_list_shows_names_and_scopes_but_never_tokens(runner):
    token = token_of(runner.invoke(main, ["keys", "create", "analysts", "--scopes", "read"]))
    result = runner.invoke(main, ["keys", "list"])
    assert result.exit_code == 0
    assert "analysts" in result.output
    assert "read" in result.output
    assert token not in result.output


def test_keys_revoke_stops_the_token_working(runner, client):
    token = token_of(runner.invoke(main, ["keys", "create", "old", "--scopes", "read"]))
    result = runner.invoke(main, ["keys", "revoke", "old"])
    assert result.exit_code == 0
    assert "Revoked" in result.output
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/experiments", headers=headers).status_code == 401
    assert "old" not in runner.invoke(main, ["keys", "list"]).output
    assert "old" in runner.invoke(main, ["keys", "list", "--all"]).output


def test_keys_revoke_of_an_unknown_key_fails_clearly(runner):
    result = runner.invoke(main, ["keys", "revoke", "nobody"])
    assert result.exit_code == 1
    assert "No active key" in result.output


def test_keys_create_rejects_unknown_scopes(runner):
    result = runner.invoke(main, ["keys", "create", "x", "--scopes", "read,superuser"])
    assert result.exit_code == 1
    assert "admin, manage, assign, read" in result.output
    assert "x " not in runner.invoke(main, ["keys", "list"]).output


def test_db_upgrade_and_current(runner):
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "already at" in result.output
    current = runner.invoke(main, ["db", "current"])
    assert "up to date" in current.output


def test_learnings_search_and_export(runner, client, keys, tmp_path):
    import csv
    import json

    for summary, verdict, tags in (
        ("Push beat email for newcomers on activation.", "win", ["push"]),
        ("Urgent tone did worse than friendly on renewals.", "loss", ["tone"]),
    ):
        response = client.post(
            "/v1/learnings",
            json={
                "summary": summary,
                "verdict": verdict,
                "tags": tags,
                "segment": "newcomers",
                "lift": {"mean": 0.14 if verdict == "win" else -0.08, "ci": [-0.1, 0.3]},
            },
            headers=keys["manage"],
        )
        assert response.status_code == 201
    table = runner.invoke(main, ["learnings", "search", "--verdict", "win"])
    assert table.exit_code == 0, table.output
    assert "factor=level" in table.output and "+14.0%" in table.output
    assert "Push beat email" in table.output and "Urgent tone" not in table.output
    found = runner.invoke(main, ["learnings", "search", "-q", "renewals"])
    assert "Urgent tone did worse" in found.output and "Push beat" not in found.output
    assert (
        "No learning matches." in runner.invoke(main, ["learnings", "search", "--tag", "x"]).output
    )

    exported = runner.invoke(main, ["learnings", "export", "--format", "json", "--sort", "lift"])
    records = json.loads(exported.stdout)
    assert [r["verdict"] for r in records] == ["loss", "win"]
    target = tmp_path / "learnings.csv"
    result = runner.invoke(main, ["learnings", "export", "--tag", "push", "-o", str(target)])
    assert result.exit_code == 0 and "1 learning(s) written" in result.stderr
    with target.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["summary"].startswith("Push beat email") and row["tags"] == "push"
    assert row["note_codes"] == ""  # a hand-written learning's notes are a person's words


def test_simulate_refuses_a_placeholder_token_clearly(runner):
    result = runner.invoke(main, ["simulate", "--hours", "1"], env={"KAIROS_TOKEN": "kairos_…"})
    assert result.exit_code == 2
    assert "'kairos_…' is not a token" in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_commands_on_a_database_without_the_schema_say_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KAIROS_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    runner = CliRunner()
    for command in (
        ["keys", "create", "first", "--scopes", "admin"],
        ["keys", "list"],
        ["stats", "check", "welcome"],
        ["learnings", "search"],
    ):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        assert "run 'kairos db upgrade' first" in result.output
        assert "Traceback" not in result.output
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["keys", "create", "first", "--scopes", "admin"]).exit_code == 0


def test_commands_on_an_unreachable_database_say_where_and_why(monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv(
        "KAIROS_DATABASE_URL", f"postgresql+psycopg://kairos:s3cret@127.0.0.1:{port}/kairos"
    )
    runner = CliRunner()
    for command in (["db", "upgrade"], ["db", "current"], ["keys", "list"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        assert (
            f"Cannot reach the database postgresql+psycopg://kairos:***@127.0.0.1:{port}/kairos"
            in result.output
        )
        assert "s3cret" not in result.output and "Traceback" not in result.output
