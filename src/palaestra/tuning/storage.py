"""Optuna storages: SQLite in the study directory by default, any SQLAlchemy URL (PostgreSQL, MySQL) to share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from palaestra.errors import UserError, redact


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def open_storage(url: str):
    """An Optuna RDB storage with a heartbeat: trials of a worker that died are failed and retried once."""
    import sqlalchemy.exc

    url = storage_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Wait for another worker's write lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    error: Exception | None = None
    for attempt in range(5):  # workers started at once may race to create the tables
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=30, grace_period=120,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
            if url.startswith("sqlite"):
                _sqlite_wal(storage.engine)
            return storage
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            error = exc
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
            # e.g. a bad port, an unknown driver, or a file that is not a database ("file is not a database")
            raise UserError(f"cannot open storage {display_url(url)}: {_reason(exc)}") from None
    raise UserError(f"cannot open storage {display_url(url)}: {_reason(error)}")


def _reason(exc: BaseException | None) -> str:
    """The first line of a driver's error, with any URL credentials in it masked (drivers quote the URL)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return redact(first)[:300]


def storage_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only that one is installed."""
    import importlib.util

    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme) and importlib.util.find_spec("psycopg") is None \
                and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def _sqlite_wal(engine) -> None:
    """Write-ahead log: workers read while another writes, and a commit does not wait for a disk flush."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener reconnect with it


def display_url(url: str) -> str:
    """The URL with any password masked, for messages and best.json."""
    try:
        from sqlalchemy.engine import make_url

        return redact(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a URL SQLAlchemy can parse (e.g. a bad port): mask what looks like a password
        return redact(url)
