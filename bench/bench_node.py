"""A fresh medmesh node for the Python benchmarks: its own data folder (and PostgreSQL
database, for `postgres`), a system token, and a transaction Bundle builder."""

import os
import subprocess
import tempfile
import uuid

PG = os.environ.get("PG", "postgres://postgres@127.0.0.1:5432")


class BenchNode:
    """`medmesh serve` on port 0 on `db` (`sqlite` or `postgres`), with `extra_env`."""

    def __init__(self, bin_path, db, extra_env=None):
        self.bin = bin_path
        self.args = ["--data-dir", tempfile.mkdtemp(prefix="medmesh-bench-")]
        self.pg_name = None
        if db == "postgres":
            self.pg_name = f"medmesh_bench_{uuid.uuid4().hex[:12]}"
            subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"CREATE DATABASE {self.pg_name}"], check=True)
            self.args += ["--database-url", f"{PG}/{self.pg_name}"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MEDMESH_")}
        self.env.update({"MEDMESH_LOG": "warn", "MEDMESH_MAX_CONNECTIONS": "256", **(extra_env or {})})
        self.proc = subprocess.Popen([bin_path, "serve", *self.args, "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, text=True, env=self.env)
        line = self.proc.stdout.readline()
        assert line.startswith("medmesh listening on "), line
        self.base = line.split(" on ", 1)[1].strip()
        self.fhir = f"{self.base}/fhir"
        self.token = self.cli("admin", "token", "--scope", "system/*.*").stdout.strip()

    def cli(self, *args):
        """A medmesh command on this node's store; fails loudly."""
        return subprocess.run([self.bin, *args, *self.args], capture_output=True, text=True, env=self.env, check=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        if self.pg_name:
            subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)"],
                           check=False)


def bundle(entries):
    """A transaction Bundle that PUTs each resource at its id."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries]}
