"""The MLflow UI in a real browser: headless Chromium shows the parent runs, the hypervolume chart
and the front artifacts of a tracked search. The screenshot is kept in .test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import tradeoff

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() != 0:
        if os.environ.get("TRADEOFF_REQUIRE_BROWSER"):  # CI: a browser that cannot be had is a failure, not a skip
            pytest.fail("no Chromium and not root to install it, but TRADEOFF_REQUIRE_BROWSER is set")
        pytest.skip("no Chromium on this machine and not root to install it (apt-get install chromium); "
                    ".ci/run installs it")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, timeout=900,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 60) -> bytes:  # a loaded machine's server answers its first call slowly
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _chromium(browser: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--window-size=1600,1000", "--virtual-time-budget=30000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=480)  # a loaded machine renders slowly


def _dom_once_it_shows(browser: str, profile: Path, url: str, needles: tuple[str, ...], within: float = 300,
                       height: int = 3000) -> str:
    """The page's DOM as soon as it contains all of `needles`, or after `within` seconds: Chromium keeps the page
    open and is asked for its DOM every two seconds over the DevTools protocol. `--dump-dom` cannot wait:
    the chart view fetches and draws its charts late, at a moment that varies from run to run. The chart
    view draws only the charts inside the window, hence a tall one."""
    import aiohttp

    proc = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--no-first-run",
                             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size=1600,{height}",
                             "--remote-debugging-port=0", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + within
    try:
        port_file = profile / "DevToolsActivePort"
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.5)
        port = port_file.read_text().split()[0]
        pages = []
        while not pages:
            assert time.monotonic() < deadline, "Chromium opened no page"
            pages = [t for t in json.loads(_get(f"http://127.0.0.1:{port}/json")) if t["type"] == "page"]
            time.sleep(0.5)

        async def poll() -> str:
            dom, n = "", 0
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    while time.monotonic() < deadline:
                        n += 1
                        await ws.send_json({"id": n, "method": "Runtime.evaluate", "params": {
                            "expression": "document.documentElement.outerHTML", "returnByValue": True}})
                        reply = await ws.receive_json()
                        while reply.get("id") != n:
                            reply = await ws.receive_json()
                        dom = reply.get("result", {}).get("result", {}).get("value", "")
                        if all(needle in dom for needle in needles):
                            break
                        await asyncio.sleep(2)
            return dom

        return asyncio.run(poll())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the browser and its renderers
        proc.wait(30)


@pytest.fixture
def ui(tmp_path):
    """A tracked search in a fresh store, and `tradeoff ui` on it; afterwards its whole process group is gone."""
    browser = _browser()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    front = tradeoff.search(tradeoff.Space({"x": tradeoff.Float(0.0, 1.0)}), {"f1": "minimize", "f2": "minimize"},
                            lambda c: {"f1": c["x"], "f2": (1 - c["x"]) ** 2}, budget=12, algorithm="random",
                            tracking={"uri": uri, "experiment": "browser"}, name="ui-search")
    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:  # `tradeoff ui`: the server in its own process group, stopped whole on SIGTERM
        ui = subprocess.Popen([sys.executable, "-m", "tradeoff.cli", "ui", "--uri", uri, "--port", str(port)],
                              stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "300"})
    base = f"http://127.0.0.1:{port}"
    group = None
    try:
        deadline = time.monotonic() + 300
        while "ready: " not in log.read_text():
            if ui.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tradeoff ui did not say it was ready on {base}: {log.read_text()[-2000:]}")
            time.sleep(1)
        group = int(log.read_text().split("server process group ")[1].split()[0])
        assert _get(f"{base}/health").strip() == b"OK"
        yield browser, base, front, tmp_path
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(60)
    assert ui.returncode == 0
    assert group is not None and not _members(group), "mlflow processes outlived `tradeoff ui`"


def _members(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_experiment_page_shows_runs_hypervolume_and_front_artifacts(ui):
    browser, base, front, tmp = ui
    exp = json.loads(_get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=browser"))
    exp_id = exp["experiment"]["experiment_id"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "mlflow-ui-experiment.png"
    shot.unlink(missing_ok=True)
    page = f"{base}/#/experiments/{exp_id}"
    _chromium(browser, tmp / "p0", f"{page}/runs?compareRunsMode=CHART", f"--screenshot={shot}")
    assert shot.exists() and shot.read_bytes()[:4] == b"\x89PNG"

    dom = _dom_once_it_shows(browser, tmp / "p1", f"{page}/runs", ("ui-search",))
    assert "ui-search" in dom  # the parent run is listed
    charts = _dom_once_it_shows(browser, tmp / "p2", f"{page}/runs?compareRunsMode=CHART",
                                ("hypervolume", "best_f1"))
    assert "hypervolume" in charts and "best_f1" in charts  # the charts of the hypervolume and best f1 are drawn
    run_page = _dom_once_it_shows(browser, tmp / "p3", f"{page}/runs/{front.run_id}/artifacts",
                                  ("front.png", "front.csv"))
    assert "front.png" in run_page and "front.csv" in run_page
