"""The README's walk-through runs as written, against a served Kairos, and prints what it shows.

The convention (stated in README.md too, in a comment where the walk-through begins):

- The walk-through is what lies between `<!-- walk-through -->` and `<!-- /walk-through -->`.
- Every ```sh block in it runs, in order, in one bash session (`set -e`, `pipefail`), as if
  typed in a second terminal while `make run` serves on localhost:8000. What a command prints
  is what the terminal shows: stdout and stderr.
- What a command prints is shown either as `#` lines directly under it (no blank line
  between), or as a ```json or ```text block right after the ```sh block (for its last
  command). Other ```json / ```text blocks, and comments after a blank line, are prose.
- Shown output is compared in shape:
  JSON (anything with a `"name":` in it): every name shown is a name in the real output (or is
  inside an object that is null there, as a holdout unit's `factors`), and each shown `"code"`
  or `"status"` has the real value;
  plain text: each line that starts in the first column starts a real line, `…` standing for
  anything; in a ```text block numbers may differ too (they come from a simulation).

The test serves Kairos (`kairos serve` on a free port, a fresh SQLite file), and changes only
the port (8000) and the admin token's placeholder (`ADMIN=kairos_…`) in the commands. The
analysis sampler is made small through the server's environment.
"""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.api.test_serve import serving

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- walk-through -->", "<!-- /walk-through -->"
TOKEN_PLACEHOLDER = "ADMIN=kairos_…"
MARK = "@@readme-step-{}@@"
SMALL_SAMPLER = {
    "KAIROS_ANALYSIS_DRAWS": "150",
    "KAIROS_ANALYSIS_TUNE": "150",
    "KAIROS_ANALYSIS_CHAINS": "2",
    "KAIROS_ANALYSIS_POLL": "0.5",
}


@dataclass
class Step:
    """A command (one or more lines of shell) and the output the README shows for it."""

    code: str
    line: int  # where it starts in README.md, for messages
    shown: str = ""
    kind: str = "sh"  # "sh": shown as `#` lines; "json" or "text": a block after the ```sh
    real: str = field(default="", repr=False)


def walkthrough_steps(text: str) -> list[Step]:
    """The walk-through's commands, in order, each with what the README shows it printing."""
    begin, end = text.index(BEGIN), text.index(END)
    offset = text[:begin].count("\n")
    region = text[begin:end]
    steps: list[Step] = []
    last_sh_end = None
    for block in re.finditer(r"^```(\w*)\n(.*?)^```\s*$", region, re.S | re.M):
        kind, body = block.group(1), block.group(2)
        first_line = offset + region[: block.start()].count("\n") + 2
        if kind == "sh":
            steps += _sh_steps(body, first_line)
            last_sh_end = block.end()
        elif kind in ("json", "text") and last_sh_end is not None:
            if region[last_sh_end : block.start()].strip() == "" and steps:
                assert not steps[-1].shown, f"README.md:{first_line}: output shown twice"
                steps[-1].shown, steps[-1].kind = body.rstrip("\n"), kind
            last_sh_end = None
        else:
            last_sh_end = None
    return steps


def _sh_steps(body: str, first_line: int) -> list[Step]:
    """Split a ```sh block at its shown outputs: the `#` lines right under a command."""
    steps, code, shown = [], [], []
    start = first_line
    previous = ""  # the previous line: a command's last line, a comment, or blank
    for number, line in enumerate(body.splitlines(), first_line):
        is_comment = line.startswith("#")
        if is_comment and (shown or (previous.strip() and not previous.startswith("#"))):
            shown.append(line[1:].removeprefix(" "))
        else:
            if shown:
                steps.append(Step("\n".join(code), start, "\n".join(shown)))
                code, shown, start = [], [], number
            code.append(line)
        previous = line
    if code or shown:
        steps.append(Step("\n".join(code), start, "\n".join(shown)))
    return [s for s in steps if s.code.strip() or s.shown]


def session_script(steps: list[Step], port: int, token: str, text: str) -> str:
    """One bash script: every step's commands, each after a marker line in the output."""
    assert text.count(TOKEN_PLACEHOLDER) == 1, f"one '{TOKEN_PLACEHOLDER}' in the walk-through"
    lines = ["set -eo pipefail"]
    for number, step in enumerate(steps):
        code = step.code.replace(TOKEN_PLACEHOLDER, f"ADMIN={token}")
        code = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{port}", code)
        lines += [f"printf '\\n{MARK.format(number)}\\n'", code]
    return "\n".join(lines) + "\n"


def split_outputs(output: str, steps: list[Step]) -> int:
    """Give each step its own part of the session's output; return how many steps ran."""
    parts = re.split(r"\n" + re.escape(MARK).replace(r"\{\}", r"(\d+)") + r"\n", output)
    ran = 0
    for number, real in zip(parts[1::2], parts[2::2], strict=True):
        steps[int(number)].real = real
        ran = int(number) + 1
    return ran


def shape_problems(step: Step) -> list[str]:
    """How the real output differs in shape from the shown one (nothing shown: nothing)."""
    shown, real = step.shown, step.real
    if not shown.strip():
        return []
    names = shown_names(shown)
    if names:
        problems = [
            f"no {name!r} in the output"
            for name, parents in names
            if not re.search(re.escape(f'"{name}"') + r"\s*:", real)
            # a holdout unit's "factors" are null: what the README shows inside them is absent
            and not any(re.search(re.escape(f'"{p}"') + r"\s*:\s*null", real) for p in parents)
        ]
        for name in ("code", "status"):
            values = re.findall(rf'"{name}"\s*:\s*("[^"…]*"|\d+)', shown)
            found = re.findall(rf'"{name}"\s*:\s*("[^"]*"|\d+)', real)
            for value, got in zip(values, found + [None] * len(values), strict=False):
                if got != value:
                    problems.append(f'"{name}" is {got}, shown {value}')
        return problems
    problems = []
    for line in shown.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith("…"):
            continue
        pattern = r".*?".join(_literal(part, step.kind == "text") for part in line.split("…"))
        if not re.search(r"^\s*" + pattern, real, re.M):
            problems.append(f"no line starts like {line!r}")
    return problems


def shown_names(shown: str) -> list[tuple[str, tuple[str, ...]]]:
    """The names in shown JSON (which may have `…` for values), each with the names of the
    objects it is in; once each, in order."""
    names, stack, last = {}, [], None
    for token in re.finditer(r'"((?:[^"\\\n]|\\.)*)"(\s*:)?|[{\[]|[}\]]', shown):
        text = token.group(0)
        if token.group(2):  # a name
            last = token.group(1)
            names.setdefault(last, tuple(n for n in stack if n))
        elif text in "{[":
            stack.append(last)
            last = None
        elif text in "}]":
            if stack:
                stack.pop()
            last = None
        else:  # a string value
            last = None
    return list(names.items())


def _literal(text: str, numbers_vary: bool) -> str:
    pattern = re.escape(text.rstrip())
    pattern = re.sub(r"(\\ )+", r"\\s+", pattern)
    if numbers_vary:
        pattern = re.sub(r"(\\-|\\\+)?\d[\d,]*(\\\.\d+)?", r"[-+]?[\\d,.]+", pattern)
    return pattern


def test_steps_are_read_from_sh_blocks_with_their_shown_output():
    text = "\n".join(
        [
            BEGIN,
            "```sh",
            "# a comment before a command is prose",
            "curl -s localhost:8000/health",
            '# {"status": "ok",',
            '#  "database": "sqlite"}',
            "",
            "export A=1   # a note",
            "B=2",
            "```",
            "",
            "```json",
            '{"b": 2}',
            "```",
            "Prose.",
            "```json",
            '{"not": "shown output"}',
            "```",
            END,
        ]
    )
    steps = walkthrough_steps(text)
    assert [(s.code, s.shown, s.kind) for s in steps] == [
        (
            "# a comment before a command is prose\ncurl -s localhost:8000/health",
            '{"status": "ok",\n "database": "sqlite"}',
            "sh",
        ),
        ("\nexport A=1   # a note\nB=2", '{"b": 2}', "json"),
    ]
    assert steps[0].line == 3 and steps[1].line == 7


def test_shape_checks_names_codes_and_first_column_lines():
    def problems(shown, real, kind="sh"):
        return shape_problems(Step("true", 1, shown, kind, real))

    shown = '{"code": 409, "status": "Conflict", "message": "…", "errors": {}}'
    assert problems(shown, '{"code":409,"status":"Conflict","message":"x","errors":{}}') == []
    assert problems(shown, '{"code":422,"status":"Conflict","message":"x","errors":{}}') == [
        '"code" is 422, shown 409'
    ]
    assert problems('{"period": 2, "weights": {…}}', '{"period":2}') == [
        "no 'weights' in the output"
    ]
    shown = '{"variant": "a", "factors": {"timing": "evening"}, "holdout": false}'
    assert problems(shown, '{"variant":null,"factors":null,"holdout":true}') == []
    assert problems(shown, '{"variant":"a","factors":{},"holdout":false}') == [
        "no 'timing' in the output"
    ]
    assert problems("x: rebuilt … arm statistics.", "x: rebuilt 12 arm statistics.\n") == []
    assert problems("200", "409") == ["no line starts like '200'"]
    text = "Regret: Kairos 216.3, saved 117.3 over 18,281 users.\n  indented: not checked"
    assert problems(text, "Regret: Kairos -0.2, saved 9 over 800 users.", "text") == []
    assert problems(text, "Regret: Kairos 1, lost 9 over 800 users.", "text") != []


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(tmp_path):
    text = README.read_text(encoding="utf-8")
    steps = walkthrough_steps(text)
    assert len(steps) > 20 and sum(bool(s.shown) for s in steps) > 10
    session = tmp_path / "session"  # the reader's folder: the venv is there as .venv
    session.mkdir()
    (session / ".venv").symlink_to(Path(sys.prefix))
    assert (session / ".venv" / "bin" / "activate").exists(), "tests run from the venv"

    with serving(tmp_path, **SMALL_SAMPLER) as (base, token, env, output):
        assert token, output
        port = int(base.rsplit(":", 1)[1])
        script = session_script(steps, port, token, text)
        (tmp_path / "session.sh").write_text(script)
        bash_env = {
            name: value
            for name, value in env.items()
            if not name.startswith(("VIRTUAL_ENV", "KAIROS_ANALYSIS", "KAIROS_TOKEN"))
        }
        started = time.monotonic()
        process = subprocess.Popen(
            ["bash", str(tmp_path / "session.sh")],
            cwd=session,
            env=bash_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # what a terminal shows: a command's errors are its output
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        took = time.monotonic() - started
        server_log = (tmp_path / "server.log").read_text()

    ran = split_outputs(output, steps)
    if process.returncode != 0:
        failed = steps[ran - 1]
        pytest.fail(
            f"The walk-through stopped (exit {process.returncode}, after {took:.0f} s) at the "
            f"command of README.md:{failed.line}:\n{failed.code}\n--- it printed:\n"
            f"{failed.real[-3000:]}\n--- server:\n{server_log[-2000:]}"
        )
    assert ran == len(steps)
    problems = [
        f"README.md:{step.line}: {problem}\n  command: {step.code.strip()[:200]}\n"
        f"  printed: {step.real.strip()[:600]}"
        for step in steps
        for problem in shape_problems(step)
    ]
    assert not problems, "\n".join(problems)
