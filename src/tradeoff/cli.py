"""The command line: run, resume, show, recipes, ui, validate."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .core.paths import resolve_run_id
from .engine.objectives import MetricNameError
from .recipe import RecipeError, load_recipe

# a file or pipe gets wide lines rather than rich's 80-column default
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)  # an error line stays whole in a log


def recipe_dirs() -> list[Path]:
    """Where shipped recipes live: ./recipes, then the project's recipes/ beside the package."""
    here = Path(__file__).resolve()
    # a checkout (src/tradeoff/..), then an installed wheel: PREFIX/lib/pythonX.Y/site-packages/tradeoff
    # has its recipes in PREFIX/share/tradeoff/recipes
    dirs = [Path.cwd() / "recipes", here.parents[2] / "recipes", here.parent / "recipes",
            here.parents[4] / "share" / "tradeoff" / "recipes", Path(sys.prefix) / "share" / "tradeoff" / "recipes"]
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_recipe(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    for d in recipe_dirs():
        for cand in (d / name, d / f"{name}.yaml"):
            if cand.exists():
                return cand
    raise RecipeError(f"recipe {name!r} not found (not a file, nor one of the shipped recipes: see `tradeoff recipes`)")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.5g}"   # a figure a run has not got (an untracked run's time)
    if isinstance(v, str) and len(v) > 24 and set(v) <= {"0", "1"}:
        return f"mask {v.count('1')}/{len(v)} on"
    return str(v)


def front_table(front, title: str = "Pareto front", limit: int | None = 50) -> Table:
    """The front in the user's units: trial, objectives (with direction), other metrics, choices."""
    arrows = {"minimize": "↓", "maximize": "↑"}
    t = Table(title=title, title_justify="left")
    t.add_column("trial", justify="right")
    for o in front.objectives:
        t.add_column(f"{o.name} {arrows[o.direction]}", justify="right", style="bold")
    members = front.members
    # constraint metrics beside the objectives; every other metric is in front.csv / trials.csv
    extra = [c.metric for c in front.constraints if c.metric not in front.names]
    for k in extra:
        t.add_column(k, justify="right", style="dim")
    params = list(members[0].config) if members else []
    for p in params:
        t.add_column(p)
    shown = members if limit is None else members[:limit]
    for m in shown:
        t.add_row(str(m.number), *[_fmt(m.metrics.get(n)) for n in front.names],
                  *[_fmt(m.metrics.get(k)) for k in extra], *[_fmt(m.config.get(p)) for p in params])
    if limit is not None and len(members) > limit:
        t.caption = f"{len(members) - limit} more members not shown"
    return t


def print_front(front, run_id: str) -> None:
    console.print(front_table(front))
    report = front.failure_report()
    if report:
        console.print(report, highlight=False)
    if not front.feasible:
        console.print(f"{front.summary()}: no trial completed and met the constraints", highlight=False)
    else:
        ref = front.reference()
        ref_s = ", ".join(f"{k}={v:.5g}" for k, v in ref.items())
        source = f"; {front.reference_source}" if front.reference_source else "; this run's nadir +10%"
        console.print(f"{front.summary()} (reference point: {ref_s}{source})", highlight=False)
        out = front.outside_reference()
        if out:
            console.print(f"{out} of {len(front.members)} front points lie outside the reference point and add "
                          f"nothing to its hypervolume; {front.hypervolume_text()}", highlight=False)
    noisy = front.noisy_report()
    if noisy:
        console.print(noisy, highlight=False)
    if front.stop_reason:
        console.print(f"stopped early: {front.stop_reason}", highlight=False)
    from .core.paths import run_dir_for

    pictures = [run_dir_for(run_id) / name for name in ("front.png", "hypervolume.png")]
    if all(p.exists() for p in pictures):
        console.print(f"plots: {pictures[0]}, {pictures[1]}", highlight=False, soft_wrap=True)
    console.print(f"run id: {run_id}", highlight=False)


def front_rc(front) -> int:
    """1 when no trial is complete and feasible (a run with nothing to show is not a success), else 0."""
    return 0 if front.feasible else 1


def cmd_run(args) -> int:
    if args.remeasure:   # every target, in this process and in its workers, times every figure afresh
        previous = os.environ.get("TRADEOFF_REMEASURE")
        os.environ["TRADEOFF_REMEASURE"] = "1"
        try:
            return _run(args)
        finally:
            if previous is None:
                del os.environ["TRADEOFF_REMEASURE"]
            else:
                os.environ["TRADEOFF_REMEASURE"] = previous
    return _run(args)


def _run(args) -> int:
    from .runner import resume_budgets, resume_run, run_recipe

    if args.resume:
        if args.recipe:
            raise RecipeError("give a recipe or --resume RUN_ID, not both (a resumed run keeps its recipe; "
                              "--set search.budget=N searches on)")
        front, run_id = resume_run(resolve_run_id(args.resume), progress=not args.quiet, uri=args.uri,
                                   budgets=resume_budgets(args.set))
    else:
        if not args.recipe:
            raise RecipeError("give a recipe file (or a shipped recipe's name), or --resume RUN_ID")
        path = find_recipe(args.recipe)
        # --uri on a new run: where it logs, as --set tracking.uri would (a JSON string is a YAML string)
        overrides = [*(args.set or []), *([f"tracking.uri={json.dumps(args.uri)}"] if args.uri else [])]
        recipe, text = load_recipe(path, overrides)
        front, run_id = run_recipe(recipe, text, path, progress=not args.quiet)
    print_front(front, run_id)
    return front_rc(front)


def cmd_show(args) -> int:
    from .engine.study import load_front, run_dir_for

    args.run_id = resolve_run_id(args.run_id)
    run_dir = run_dir_for(args.run_id)
    if (run_dir / "study.json").exists():
        front = load_front(run_dir)
        if args.all:
            from .tracking.run_files import trials_frame

            console.print(trials_frame(front).to_string(index=False), highlight=False)
        print_front(front, args.run_id)
        from .engine.run_state import run_state

        console.print(f"status: {run_state(run_dir).describe()}", highlight=False, soft_wrap=True)  # a command to copy
        console.print(f"run dir: {run_dir}", highlight=False, soft_wrap=True)
        return 0
    from .tracking.mlflow import default_tracking_uri, read_run

    uri = args.uri or default_tracking_uri()
    db = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else None
    if db is not None and not Path(db).exists():  # opening it would create an empty store
        raise FileNotFoundError(f"no run {args.run_id!r}: not under {run_dir.parent} and no MLflow store at {db}")
    from mlflow.exceptions import MlflowException

    try:
        info = read_run(args.run_id, uri)
    except MlflowException:
        raise FileNotFoundError(f"no run {args.run_id!r}: not under {run_dir.parent} nor in the MLflow store {uri}") from None
    console.print_json(json.dumps(info, default=str))
    return 0


def cmd_runs(args) -> int:
    import time

    from .core.paths import tradeoff_home
    from .engine.run_state import list_runs

    if args.last < 1:
        raise UsageError(f"--last {args.last}: give how many runs to list, 1 or more (or --all)")
    where = tradeoff_home() / "runs"
    runs = list_runs(where, limit=None if args.all else args.last)
    t = Table(title=f"Runs in {where} (the most recently active first; tradeoff show RUN_ID)", title_justify="left")
    for c in ("run", "name", "workload", "algorithm", "trials", "status", "last active"):
        t.add_column(c, justify="right" if c == "trials" else "left")
    for r in runs:
        t.add_row(r.run_id, r.name, r.workload or "-", r.algorithm,
                  f"{r.done}/{r.budget if r.budget is not None else '-'}", r.status,
                  time.strftime("%Y-%m-%d %H:%M", time.localtime(r.last_active)))
    console.print(t if runs else f"no runs in {where}", highlight=False)
    return 0


def cmd_compare(args) -> int:
    from .tracking.compare import compare

    if args.run_ids:
        run_ids = [resolve_run_id(r) for r in args.run_ids]
    elif args.experiment:
        from .tracking.compare import experiment_runs

        if args.last < 1:
            raise UsageError(f"--last {args.last}: give how many of the experiment's searches to compare, 1 or more")

        run_ids = experiment_runs(args.experiment, args.uri, args.last)
    else:
        raise UsageError("give run ids to compare, or --experiment NAME to compare its latest searches")
    c = compare(run_ids, experiment=args.experiment, uri=args.uri, out_dir=args.out, log=not args.no_log)
    t = Table(title=f"Compared at reference {', '.join(f'{k}={v:.5g}' for k, v in c.reference.items())} "
                    f"({c.reference_source})", title_justify="left")
    for col in c.rows[0]:
        t.add_column(col, justify="left" if col in ("run", "algorithm") else "right")
    for r in c.rows:
        t.add_row(*[_fmt(v) for v in r.values()])
    console.print(t)
    console.print(f"fronts: {c.fronts_png}\nhypervolume curves: {c.hypervolume_png}\ntable: {c.table_csv}",
                  highlight=False)
    if c.run_id:
        console.print(f"logged as comparison run {c.run_id} in experiment {c.experiment}", highlight=False)
    elif not args.no_log:
        console.print("not logged to MLflow: every compared run ran with tracking off (name --experiment to log "
                      "the comparison there)", highlight=False)
    return 0


def cmd_recipes(args) -> int:
    import yaml

    t = Table(title="Shipped recipes (tradeoff run NAME)", title_justify="left")
    for c in ("recipe", "workload", "algorithm", "budget", "description"):
        t.add_column(c)
    for d in recipe_dirs():
        for p in sorted(d.glob("*.yaml")):
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except Exception as e:  # noqa: BLE001 - list what we can
                t.add_row(str(p), "?", "?", "?", f"unreadable: {e}")
                continue
            wl = data.get("workload")
            wl = wl.get("name") if isinstance(wl, dict) else wl
            s = data.get("search", {}) or {}
            t.add_row(p.stem, str(wl),
                      str(s.get("algorithm", "nsga2")), str(s.get("budget", 100)), data.get("description", ""))
    console.print(t)
    return 0


def cmd_validate(args) -> int:
    from .recipe import build_workload

    recipe, _ = load_recipe(find_recipe(args.recipe), args.set)
    wl = build_workload(recipe)
    console.print(f"ok: {recipe.name} searches {wl.name} ({len(wl.space)} params, "
                  f"{wl.space.cardinality:.3g} configs) for {', '.join(recipe.objectives)}", highlight=False)
    return 0


def cmd_ui(args) -> int:
    from .tracking.mlflow import default_tracking_uri, local_artifact_root

    uri = args.uri or default_tracking_uri()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    if uri.startswith("sqlite:") or uri.startswith("file:"):  # artifacts beside the store, as the tracker keeps them
        cmd += ["--default-artifact-root", local_artifact_root(uri) or (Path.cwd() / "mlruns").as_uri()]
    url = f"http://{args.host}:{args.port}"
    console.print(f"starting the MLflow UI on {url} (store {uri}); Ctrl-C stops it", highlight=False)
    if args.dry_run:
        console.print(" ".join(cmd), highlight=False)
        return 0
    return serve_ui(cmd, url)


def serve_ui(cmd: list[str], url: str, ready_timeout_s: float = 600) -> int:
    """Run the server in its own process group, say when it answers, and stop the whole group
    (its workers included) on Ctrl-C or SIGTERM."""
    import signal
    import time
    import urllib.request

    proc = subprocess.Popen(cmd, start_new_session=True)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        console.print(f"server process group {proc.pid}", highlight=False)
        deadline = time.monotonic() + ready_timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.read().strip() == b"OK":
                        console.print(f"ready: {url}", highlight=False)
                        break
            except OSError:
                time.sleep(0.5)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:  # workers that outlived their parent, or a parent that would not stop
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradeoff", description="Find the Pareto front of quality against real cost.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a recipe (or --resume an interrupted run)")
    r.add_argument("recipe", nargs="?", help="recipe YAML file or shipped recipe name")
    r.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a recipe field")
    r.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its checkpoint (with --set "
                   "search.budget=N or search.time_budget_s=S: a finished run searches on)")
    r.add_argument("--uri", help="the MLflow tracking URI: where a new run logs (as --set tracking.uri=URI), or with "
                                 "--resume the store holding the run, when it is not local")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    r.add_argument("--remeasure", action="store_true",
                   help="time every latency figure afresh instead of taking it from the measurement cache "
                        "(the new figures are cached)")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("show", help="print a run's front")
    s.add_argument("run_id")
    s.add_argument("--all", action="store_true", help="also print every trial")
    s.add_argument("--uri", help="MLflow tracking URI, when the run is not in the local run store")
    s.set_defaults(fn=cmd_show)

    c = sub.add_parser("compare", help="compare searches: a table, overlaid fronts and hypervolume curves")
    c.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    c.add_argument("--experiment", help="log the comparison in this experiment (default: the first tracked run's); "
                                        "with no run ids, compare its latest searches")
    c.add_argument("--last", type=int, default=10, metavar="N",
                   help="with --experiment and no run ids: how many of its latest searches (default 10)")
    c.add_argument("--uri", help="MLflow tracking URI (default: the local store)")
    c.add_argument("--out", help="folder for the plots and table (default: ./comparisons/...)")
    c.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")
    c.set_defaults(fn=cmd_compare)

    ls = sub.add_parser("runs", help="list the runs of the local run store, with how each stands")
    ls.add_argument("--last", type=int, default=20, metavar="N", help="the N most recently active (default 20)")
    ls.add_argument("--all", action="store_true", help="every run")
    ls.set_defaults(fn=cmd_runs)

    sub.add_parser("recipes", help="list the shipped recipes").set_defaults(fn=cmd_recipes)

    v = sub.add_parser("validate", help="check a recipe without running it")
    v.add_argument("recipe")
    v.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    v.set_defaults(fn=cmd_validate)

    u = sub.add_parser("ui", help="start the MLflow UI on the project's store")
    u.add_argument("--uri")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    u.set_defaults(fn=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RecipeError as e:
        err_console.print(f"[bold red]recipe error[/]\n{e}", highlight=False)
        return 2
    except (FileNotFoundError, UsageError) as e:
        err_console.print(f"[bold red]error[/] {e}", highlight=False)
        return 2
    except MetricNameError as e:
        err_console.print(f"[bold red]error[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt as e:
        _notes(e)
        return 130
    except Exception as e:  # noqa: BLE001 - the expected failures, in one clean paragraph
        if not _clean(e):
            raise
        err_console.print(f"[bold red]error[/] {e}", highlight=False)
        _notes(e)
        return 1


class UsageError(Exception):
    """A command given what it cannot work with; the message says what to give."""


def _clean(e: BaseException) -> bool:
    """Errors that say all there is to say (a lock held, a store down, a directory not writable)."""
    from .core.run_lock import RunLocked

    names = {"StoreError", "CheckpointError", "MlflowException", "RestException"}
    return isinstance(e, (RunLocked, OSError)) or any(c.__name__ in names for c in type(e).__mro__)


def _notes(e: BaseException) -> None:
    for note in getattr(e, "__notes__", []):
        err_console.print(note, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
