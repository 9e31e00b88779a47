"""A built wheel ships the recipes, and `tradeoff recipes` / `validate NAME` work from the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_recipes_and_lists_them_when_installed(tmp_path):
    tree = tmp_path / "tree"  # a copy, so the build leaves nothing in the checkout
    tree.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, tree / part)
    for part in ("src", "recipes"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(wheels)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("tradeoff-*.whl"))
    prefix = tmp_path / "env"  # a temporary install prefix; its dependencies come from this interpreter
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", "--prefix",
                           str(prefix), str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    elsewhere = tmp_path / "elsewhere"  # not a checkout: no recipes/ here
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    code = "import tradeoff.cli, sys; print(tradeoff.cli.__file__); sys.exit(tradeoff.cli.main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "recipes"], capture_output=True, text=True, env=env,
                         cwd=elsewhere, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(str(site))  # the installed package, not the checkout
    shipped = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    for name in shipped:
        assert name in out.stdout
    val = subprocess.run([sys.executable, "-c", code, "validate", "zdt1"], capture_output=True, text=True,
                         env=env, cwd=elsewhere, timeout=300)
    assert val.returncode == 0 and "ok: zdt1" in val.stdout, val.stderr
