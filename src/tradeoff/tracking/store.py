"""Opening an MLflow store: a local SQLite store is created (and migrated) by one process at a time.

Creating a SQLite store runs every one of MLflow's schema migrations, which takes seconds. The
first store made with a given MLflow version is kept as a template in the user's cache folder
(``$XDG_CACHE_HOME/tradeoff``, else ``~/.cache/tradeoff``; ``TRADEOFF_HOME`` when neither is
writable); later new stores start as a copy of it, with the Default experiment's artifact location set as
MLflow would have set it (``./mlruns/0`` in the working directory).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import unquote

from ..core.run_lock import file_lock


class StoreError(RuntimeError):
    """The tracking store cannot be reached or opened; the message names it."""


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    db = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    return None if not db or db == ":memory:" else Path(os.path.abspath(db))


def open_client(uri: str):
    """An ``MlflowClient`` on ``uri``. It creates (and migrates) a SQLite store as it starts: that happens under
    a lock beside the database file, since two processes creating it at once both fail and can break it."""
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    try:
        if db is None:
            return MlflowClient(tracking_uri=uri)  # a server or a file store: created by its owner
        if not db.parent.is_dir():
            raise StoreError(f"tracking store {uri}: directory {db.parent} does not exist")
        with file_lock(db.with_name(db.name + ".lock")):
            if not db.exists() or db.stat().st_size == 0:
                _copy_template(db)
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # the first call creates and migrates the database
            return client
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - say which store, keep the cause
        raise StoreError(f"tracking store {uri} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e


def _template() -> Path | None:
    """An empty, fully migrated store for the installed MLflow version, made once (None if it cannot be)."""
    from importlib import metadata

    try:
        name = f"mlflow-{metadata.version('mlflow')}.db"
    except metadata.PackageNotFoundError:
        return None
    for folder in _template_folders():
        path = folder / name
        if _valid(path):
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        return _make_template(path)
    return None


def _template_folders() -> list[Path]:
    from ..core.paths import tradeoff_home

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folders = [Path(cache) / "tradeoff" / "mlflow-templates"]
    try:
        folders.append(tradeoff_home() / "mlflow-templates")
    except Exception:  # noqa: BLE001 - an unusable home is reported where it is used, not here
        pass
    return folders


def _make_template(path: Path) -> Path | None:
    try:
        with file_lock(path.with_name(path.name + ".lock")):
            if not _valid(path):
                from mlflow.tracking import MlflowClient

                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.db")
                tmp.unlink(missing_ok=True)
                MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
                os.replace(tmp, path)
        return path if _valid(path) else None
    except (OSError, sqlite3.Error):
        return None


def _valid(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
            return bool(c.execute("SELECT version_num FROM alembic_version").fetchone())
    except sqlite3.Error:
        return False


def _copy_template(db: Path) -> None:
    """Start ``db`` as a copy of the template; on any trouble MLflow creates it as usual."""
    template = _template()
    if template is None:
        return
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, tmp)
        with sqlite3.connect(tmp) as c:
            c.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                      (os.path.join(os.getcwd(), "mlruns", "0"),))
        os.replace(tmp, db)
    except (OSError, sqlite3.Error):
        tmp.unlink(missing_ok=True)
