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


def post_all(url, token, bodies, workers):
    """POSTs each of `bodies` (JSON-ready objects) to `url` from `workers` keep-alive
    connections, each taking the next body as it is free (the order of a thread pool's
    `map`), and returns (statuses in the bodies' order, seconds taken).

    A client of its own, on asyncio streams, with every request encoded before the clock
    starts: the `requests` package spent ~2 ms of CPU a call, about a fifth of the two cores
    the node and its database share with the client (bench/README.md)."""
    import asyncio
    import json
    import time
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    head = (f"POST {u.path}{'?' + u.query if u.query else ''} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n"
            f"Accept: application/fhir+json\r\n")
    requests_ = []
    for b in bodies:
        data = json.dumps(b).encode()
        requests_.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    statuses = [None] * len(requests_)

    async def worker(queue):
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        try:
            while queue:
                i = queue.pop()
                writer.write(requests_[i])
                line = await reader.readline()
                if not line:
                    raise ConnectionError("the node closed the connection")
                statuses[i] = int(line.split()[1])
                length, chunked = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
                        await reader.readexactly(size + 2)
                    await reader.readline()
                else:
                    await reader.readexactly(length)
        finally:
            writer.close()

    async def run():
        queue = list(range(len(requests_)))[::-1]
        await asyncio.gather(*(worker(queue) for _ in range(workers)))

    t = time.perf_counter()
    asyncio.run(run())
    return statuses, time.perf_counter() - t
