import os
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # helper workloads importable as `python: helpers.module:function`
# built-in compression models train once per test session (subprocesses inherit it), not once per test
os.environ.setdefault("TRADEOFF_MODELS", tempfile.mkdtemp(prefix="tradeoff-models-"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own run store and MLflow store, under tmp_path."""
    monkeypatch.setenv("TRADEOFF_HOME", str(tmp_path / ".tradeoff"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    yield


def subprocess_env(tmp_path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["TRADEOFF_HOME"] = str(tmp_path / ".tradeoff")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    return env
