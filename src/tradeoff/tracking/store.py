"""Opening an MLflow store: a local SQLite store is created (and migrated) by one process at a time."""

from __future__ import annotations

import os
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
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # the first call creates and migrates the database
            return client
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - say which store, keep the cause
        raise StoreError(f"tracking store {uri} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
