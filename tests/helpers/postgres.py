"""A throwaway PostgreSQL cluster for tests: initdb into a temporary folder, pg_ctl on a free loopback port.

It never touches a system service. As root, the server runs as the `postgres` user (PostgreSQL
refuses root). Without PostgreSQL or psycopg the tests that need it are skipped with the reason,
except under CI (CI=true), where a missing PostgreSQL is a failure: CI installs it (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers.server import free_port


def pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, where PostgreSQL must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must test the PostgreSQL store: {reason}")
    pytest.skip(reason)


class PostgresCluster:
    """`start()`, `stop()` (fast shutdown: clients are disconnected), `start()` again, `destroy()`."""

    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
        bindir = pg_bindir()
        if bindir is None:
            unavailable("PostgreSQL server binaries not installed (apt-get install postgresql)")
        assert bindir is not None
        self.bindir = bindir
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
                unavailable("running as root without a 'postgres' user to start the server as")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.home = Path(tempfile.mkdtemp(prefix="recotorch-pg-"))  # outside pytest's 0700 tree
        self.home.chmod(0o755)
        self.data = self.home / "data"
        self.data.mkdir()
        self.log = self.home / "pg.log"
        self.log.touch()
        if self.run_as:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.log, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._ctl("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def _ctl(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.run_as, str(self.bindir / program), *args], capture_output=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stdout.decode()}\n{done.stderr.decode()}"
                               f"\n{self.log.read_text()[-2000:]}")

    def start(self) -> PostgresCluster:
        self._ctl("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._ctl("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def destroy(self) -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)
