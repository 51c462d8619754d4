"""A newcomer's first run: on an empty user cache, the sampling stack imports without a warning
that pyproject's `filterwarnings` has not judged harmless (any other one fails the suite)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ArviZ warns once a day, stamping the day in the user cache; so does anything else that warns
# only on a first run. Another process, an empty HOME and cache: the first run of the day.
FIRST_IMPORTS = """
def test_the_sampling_stack_imports():
    import arviz
    import jax
    import nutpie
    import pymc
"""


def test_the_first_run_on_an_empty_user_cache_passes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    test_file = tmp_path / "test_first_imports.py"
    test_file.write_text(FIRST_IMPORTS)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    env.pop("PYTENSOR_FLAGS", None)
    env.pop("MPLCONFIGDIR", None)
    pytest_args = ["-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "--rootdir", str(tmp_path), str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the run took ArviZ's first-of-the-day path, so it did start from the empty cache
    assert (home / ".cache" / "arviz" / "daily_warning").exists()
