"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, loopback only.

The server binaries come from ``$PG_BINDIR``, ``pg_config --bindir``, the newest
``/usr/lib/postgresql/*/bin`` or ``PATH``; ``find_bindir`` returns None when there are
none at all (the tests are then skipped with that reason). initdb refuses to run as
root, so as root the server runs as the ``postgres`` user (``runuser``) in a folder it
owns. It listens on 127.0.0.1 at a free port and on a unix socket in that folder;
``fsync`` is off unless asked for (the tests restart it cleanly, never crash it).

One role needs a password (``PASSWORD_ROLE``, scram over TCP) so the tests can check
that lipbatch takes it from ``PGPASSWORD``; every other connection is trusted.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from lipbatch.state.postgres import parse_url, schema_name

PASSWORD_ROLE = "lipbatch_pw"
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
SUPERUSER = "postgres"


def find_bindir() -> Path | None:
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         check=True).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    def __init__(self, bindir: Path, *, fsync: bool = False) -> None:
        self.bindir = bindir
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="lipbatch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bindir / tool), *args], check=True, capture_output=True, text=True)

    def start(self) -> PgServer:
        self._pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8")
        hba = (f"local all all trust\nhost all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
               "host all all 127.0.0.1/32 trust\n")
        self._write_as_owner(self.data / "pg_hba.conf", hba)
        self._ctl_start()
        self.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        return self

    def _write_as_owner(self, path: Path, text: str) -> None:
        stat = path.stat()
        path.write_text(text)
        os.chown(path, stat.st_uid, stat.st_gid)

    def _ctl_start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200 "
                   f"-c fsync={'on' if self.fsync else 'off'}")
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self._ctl_start()

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def started_at(self) -> object:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    def url(self, database: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.sql(f"CREATE DATABASE {name}")
        self.sql(f"GRANT ALL ON DATABASE {name} TO {PASSWORD_ROLE}")
        return name

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def schema_of(url: str) -> str:
    return schema_name(parse_url(url).campaign or "")


def connect(url: str):  # -> psycopg.Connection
    """A plain connection to a campaign's database, its schema first on the search path."""
    import psycopg

    conn = psycopg.connect(parse_url(url).conninfo, autocommit=True)
    conn.execute(f"SET search_path TO {schema_of(url)}")
    return conn
