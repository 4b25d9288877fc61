"""One imgsearch serve process on a free loopback port, for the API and browser tests.

With IMGSEARCH_TEST_STORE=postgresql every server stores into PostgreSQL instead of its data
directory: one throw-away cluster per test process (tests/pg.py), one database per data directory
(so a server restarted on the same directory finds its data again)."""
import atexit
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

_cluster = None
_databases = {}


def store_kind():
    return "postgresql" if os.environ.get("IMGSEARCH_TEST_STORE") == "postgresql" else "sqlite"


# Tests of what only the embedded store has (its files on disk, `imgsearch reembed`).
embedded_only = pytest.mark.skipif(store_kind() != "sqlite", reason="about the embedded store's own files")


def cluster():
    """The test process's PostgreSQL, started on first use."""
    global _cluster
    if _cluster is None:
        from pg import PostgresCluster
        _cluster = PostgresCluster().start()
        atexit.register(_cluster.cleanup)
    return _cluster


def database_for(data_dir):
    if data_dir not in _databases:
        _databases[data_dir] = cluster().create_database()
    return _databases[data_dir]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One imgsearch serve process; start() again after kill() reuses the data directory."""

    def __init__(self, binary, model, data_dir, extra=(), env=None, tls=None):
        """tls: (certificate, key) PEM files to serve HTTPS with; requests then verify against the
        certificate (self.verify)."""
        self.env = {**os.environ, **env} if env else None
        self.binary, self.model, self.data_dir, self.extra = binary, model, str(data_dir), list(extra)
        self.store_url = database_for(self.data_dir) if store_kind() == "postgresql" and "--store" not in extra else None
        if self.store_url:
            self.extra += ["--store", self.store_url]
        self.port = free_port()
        self.verify = tls[0] if tls else True
        if tls:
            self.extra += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc = None
        self.log = open(os.path.join(self.data_dir + ".log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", self.data_dir,
             "--model", self.model, *self.extra], stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                requests.get(self.url + "/index/health", timeout=1, verify=self.verify)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def alive(self):
        return self.proc.poll() is None

    def stored_blobs(self):
        """The names (SHA-256) of the image bytes the store holds."""
        if self.store_url:
            db = self.store_url.rsplit("/", 1)[1]
            return set(cluster().psql("SELECT sha256 FROM imgsearch.blobs", db).split())
        root = os.path.join(self.data_dir, "blobs")
        return {f for d, _, files in os.walk(root) if os.path.basename(d) != "tmp" for f in files}
