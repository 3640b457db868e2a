"""Real `glimpse serve` processes for tests: started on a free loopback port, stopped afterwards.

`GLIMPSE_TEST_DATABASE` chooses the registry of every server started here: `sqlite` (default, a
file in the data dir), `postgresql` or `mariadb` (the real servers on this machine: each data dir
gets a fresh database of its own, named `GLIMPSE_TEST_DATABASE_PREFIX` + a random suffix, so runs
side by side never share one; servers started on the same data dir share its database, as they
share its SQLite file). `drop_databases()` removes the databases this process made.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text

DATABASE = os.environ.get("GLIMPSE_TEST_DATABASE", "sqlite")
DATABASE_PREFIX = os.environ.get("GLIMPSE_TEST_DATABASE_PREFIX", "glimpse_api")
#: SQLAlchemy URL of each SQL server, the database to administer it from, and URL options.
SQL_SERVERS = {
    "postgresql": ("postgresql+psycopg://postgres@127.0.0.1:5432", "postgres", ""),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306", "", "?charset=utf8mb4"),
}
#: Where a data dir records the database made for it (next to the store's folder).
DATABASE_MARKER = "test-database-url"
_created: list[str] = []


def _admin(kind: str) -> Engine:
    root, admin_db, _ = SQL_SERVERS[kind]
    return create_engine(f"{root}/{admin_db}", isolation_level="AUTOCOMMIT")


def database_for(data_dir: Path) -> str | None:
    """The registry URL for a server on `data_dir`: None on SQLite (its default file), else the
    database recorded in `data_dir`, made fresh on first use."""
    if DATABASE == "sqlite":
        return None
    if DATABASE not in SQL_SERVERS:
        raise RuntimeError(f"GLIMPSE_TEST_DATABASE={DATABASE!r}: use sqlite, postgresql or "
                           "mariadb")
    marker = data_dir / DATABASE_MARKER
    if marker.exists():
        return marker.read_text()
    name = f"{DATABASE_PREFIX}_{uuid.uuid4().hex[:12]}"
    engine = _admin(DATABASE)
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    _created.append(name)
    root, _, options = SQL_SERVERS[DATABASE]
    url = f"{root}/{name}{options}"
    marker.write_text(url)
    return url


def drop_databases() -> None:
    """Drop every database `database_for` made in this process (its servers are stopped)."""
    if not _created:
        return
    engine = _admin(DATABASE)
    with engine.connect() as conn:
        for name in _created:
            force = " WITH (FORCE)" if DATABASE == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    engine.dispose()
    _created.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process. `url` has no trailing slash."""

    data_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Server:
        env = {**os.environ, **self.env}
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "glimpse", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/versions", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def start_server(data_dir: Path, **settings: object) -> Server:
    """A server with one worker (so `pid` is the process that serves) unless told otherwise,
    on the registry `GLIMPSE_TEST_DATABASE` names unless `database_url` is given."""
    settings.setdefault("workers", 1)
    chosen = settings.pop("port", None)  # a caller's own, for settings that name the URL
    port = chosen if isinstance(chosen, int) else free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    if "database_url" not in settings:
        url = database_for(data_dir)
        if url is not None:
            settings["database_url"] = url
    env = {f"GLIMPSE_{k.upper()}": str(v) for k, v in settings.items()}
    return Server(data_dir=data_dir, port=port, env=env).start()
