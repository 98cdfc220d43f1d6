"""Starts the real medmesh binary (MEDMESH_BIN) on port 0 with a fresh store per test module."""

import os
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

BIN = os.environ.get("MEDMESH_BIN", "target/debug/medmesh")
PG = os.environ.get("MEDMESH_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")


class Node:
    def __init__(self, db, listen="127.0.0.1:0", extra_args=(), extra_env=None):
        self.dir = tempfile.TemporaryDirectory()
        self.args = ["--data-dir", self.dir.name]
        self.pg_name = None
        if db == "postgres":
            self.pg_name = f"medmesh_py_{uuid.uuid4().hex}"
            subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"CREATE DATABASE {self.pg_name}"], check=True)
            self.args += ["--database-url", f"{PG}/{self.pg_name}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDMESH_")}
        env["MEDMESH_LOG"] = "warn"
        env.update(extra_env or {})
        self.env = env
        self.args += list(extra_args)
        self.listen = listen
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen([BIN, "serve", *self.args, "--listen", self.listen], stdout=subprocess.PIPE, text=True, env=self.env)
        line = self.proc.stdout.readline()
        self.mllp = None
        if line.startswith("medmesh MLLP listening on "):
            host, port = line.split(" on ", 1)[1].strip().rsplit(":", 1)
            self.mllp = (host, int(port))
            line = self.proc.stdout.readline()
        assert line.startswith("medmesh listening on "), f"node did not start: {line!r}"
        self.base = line.split(" on ", 1)[1].strip()
        self.url = f"{self.base}/fhir"
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "node never became healthy"
            time.sleep(0.02)
        out = subprocess.run([BIN, "admin", "token", *self.args, "--scope", "system/*.*"], capture_output=True, text=True, env=self.env, check=True)
        self.token = out.stdout.strip()

    def restart(self, **env):
        """Stops the node and starts it again on the same store, with changed environment."""
        self.proc.kill()
        self.proc.wait()
        self.env.update(env)
        self._spawn()

    def cli(self, *args, **env):
        """Runs a medmesh command against this node's store."""
        return subprocess.run([BIN, *args, *self.args], capture_output=True, text=True, env={**self.env, **env})

    def close(self):
        self.proc.kill()
        self.proc.wait()
        if self.pg_name:
            subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)"], check=False)
        self.dir.cleanup()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real AWS API server (moto in server mode) on loopback, for S3 and KMS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_client(service, endpoint):
    """A boto3 client for `service` on the moto server, with the tests' credentials."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="medmesh", aws_secret_access_key="medmesh-secret")


@pytest.fixture(params=["sqlite", "postgres"])
def node(request):
    n = Node(request.param)
    yield n
    n.close()
