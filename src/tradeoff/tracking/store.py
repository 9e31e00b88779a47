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


def open_store(client, uri: str) -> None:
    """Touch the store once, so that MLflow creates it now; under a lock beside a SQLite file, since two
    processes creating the same database at once both fail and can leave it unusable."""
    db = sqlite_path(uri)
    try:
        if db is None:
            return  # a server or a file store: created by its owner, reached on first use
        if not db.parent.is_dir():
            raise StoreError(f"tracking store {uri}: directory {db.parent} does not exist")
        with file_lock(db.with_name(db.name + ".lock")):
            client._tracking_client.store  # noqa: B018 - the property creates and migrates the database
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - say which store, keep the cause
        raise StoreError(f"tracking store {uri} cannot be opened: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e
