"""The PostgreSQL server the database tests use: the one configured, or a throwaway cluster.

``make test`` must pass on any Debian-like machine, not only on one where PostgreSQL already runs
at 127.0.0.1:5432. When ``CADENCIA_TEST_PG`` is not set and nothing answers there, the tests start
a cluster of their own with Debian's ``postgresql`` binaries (``make test`` installs the package
the way it installs chromium): ``initdb`` in a temporary folder, trust auth, a free loopback port,
stopped and deleted when the session ends. An explicitly configured server must answer.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from shared.ports import free_port

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def answers(dsn: str, timeout: float = 1.0) -> bool:
    """Whether a TCP server listens where ``dsn`` points (enough to tell "no server" apart)."""
    parts = urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=timeout):
            return True
    except OSError:
        return False


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "no PostgreSQL answers at 127.0.0.1:5432 and no initdb was found: install Debian's 'postgresql' "
        "package (make test does) or set CADENCIA_TEST_PG to an admin DSN"
    )


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder on a free loopback port, trust auth."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cadencia-pg-"))
        self.data = self.root / "data"
        # initdb refuses to run as root; CI runs as root, so the cluster belongs to 'postgres'.
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> ThrowawayCluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def admin_dsn() -> tuple[str, ThrowawayCluster | None]:
    """The admin DSN for the session, and the cluster started for it (to stop at the end), if any."""
    configured = os.environ.get("CADENCIA_TEST_PG")
    if configured:
        if not answers(configured):
            raise RuntimeError(f"CADENCIA_TEST_PG is set but nothing answers at {urlsplit(configured).netloc}")
        return configured, None
    if answers(DEFAULT_ADMIN_DSN):
        return DEFAULT_ADMIN_DSN, None
    cluster = ThrowawayCluster().start()
    return cluster.admin_dsn, cluster
