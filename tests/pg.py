"""A throw-away PostgreSQL 15 server on a free loopback port, for the tests that need a database.

Standard library only. PostgreSQL refuses to run as root, so when started as root (CI runs as root)
initdb, pg_ctl and the server run as the `nobody` account via runuser; psql runs as the caller.
The calling process makes itself a child subreaper so that it, not a possibly lazy init, reaps the
daemonised postmaster (and, after kill(), its orphans): a zombie holding the pid in postmaster.pid
keeps postgres from starting again.
"""
import ctypes
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"
PSQL = "/usr/bin/psql" if os.path.exists("/usr/bin/psql") else os.path.join(BIN, "psql")
_names = itertools.count(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid):
    """(state letter, ppid) of pid from /proc ("Z" is a zombie), or (None, None) when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            return state, int(ppid)
    except OSError:
        return None, None


class PostgresCluster:
    """One initdb'd data directory plus the server running on it; start() after kill() reuses the data."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = self.data = None
        self.as_nobody = os.geteuid() == 0

    def _run(self, *cmd):
        """Run a server-side binary (as nobody when root); raise RuntimeError with its output on failure."""
        argv = (["runuser", "-u", "nobody", "--"] if self.as_nobody else []) + [os.path.join(BIN, cmd[0]), *cmd[1:]]
        p = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}\n{p.stdout}{p.stderr}"
                               f"\n--- postgres.log ---\n{self.log_tail()}")
        return p.stdout

    def start(self):
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="pg-", dir="/tmp")  # /tmp is world-traversable
            self.data = os.path.join(self.dir, "data")
            if self.as_nobody:
                shutil.chown(self.dir, "nobody", "nogroup")  # initdb creates everything below as nobody
            self._run("initdb", "-D", self.data, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C")
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.dir}'\nfsync = on\n"
                        "max_connections = 200\nshared_buffers = 128MB\n")
        self._run("pg_ctl", "-w", "-t", "60", "-D", self.data, "-l", os.path.join(self.dir, "postgres.log"), "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                self.psql("SELECT 1")
                return self
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql, dbname="postgres"):
        argv = [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                "-U", "postgres", "-d", dbname, "-c", sql]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                           env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        if p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}) running {sql!r} on {dbname}:\n{p.stderr}")
        return p.stdout

    def create_database(self, name=None):
        name = name or f"t_{next(_names)}_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _lock(self):
        """The lines of <data>/postmaster.pid, or [] when there is none."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return f.read().splitlines()
        except (TypeError, OSError):
            return []

    def pid(self):
        """The postmaster's pid, or None when no live postmaster owns the data directory."""
        lines = self._lock()
        return int(lines[0]) if lines and lines[0].isdigit() and _stat(lines[0])[0] not in (None, "Z") else None

    def is_running(self):
        return self.pid() is not None

    def _wait_gone(self, pids, grace=10, timeout=30):
        """Reap pids until none exists; SIGKILL those still alive after grace seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            pids = [p for p in pids if _stat(p)[0]]
            if not pids:
                return
            for p in pids:
                try:
                    os.waitpid(p, os.WNOHANG)  # ours as subreaper once orphaned; otherwise init's job
                except ChildProcessError:
                    pass
                if time.monotonic() - start > grace and _stat(p)[0] not in (None, "Z"):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.02)

    def stop(self, mode="fast"):
        pid = self.pid()
        if pid:
            self._run("pg_ctl", "-w", "-t", "60", "-D", self.data, "-m", mode, "stop")
            self._wait_gone([pid])

    def restart(self):
        self.stop()
        return self.start()

    def kill(self):
        """SIGKILL the postmaster (a crash) and wait for its orphaned children to notice and exit."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGSTOP)  # no new backends while we list its children
            family = [pid] + [int(p) for p in filter(str.isdigit, os.listdir("/proc")) if _stat(p)[1] == pid]
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(family)

    def cleanup(self):
        try:
            self.stop()
        finally:
            self.kill()
            lines = self._lock()  # a crashed server leaves its System V segment ("key shmid" on line 7)
            if len(lines) > 6 and len(lines[6].split()) == 2:
                subprocess.run(["ipcrm", "-m", lines[6].split()[1]], capture_output=True)
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = self.data = None

    def log_tail(self, n=50):
        try:
            with open(os.path.join(self.dir, "postgres.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except (TypeError, OSError):
            return ""


if __name__ == "__main__":
    pg = PostgresCluster().start()
    try:
        db = pg.create_database().rsplit("/", 1)[1]
        assert pg.psql("SELECT 1", db).strip() == "1"
        pg.restart()
        assert pg.psql("SELECT 1", db).strip() == "1"
        pg.kill()
        assert not pg.is_running()
        pg.start()
        assert pg.psql("SELECT 1", db).strip() == "1"
        pg.drop_database(db)
    finally:
        pg.cleanup()
    print("ok")
