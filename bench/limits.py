#!/usr/bin/env python3
"""Input bounds of two medmesh builds, side by side: a repeated search parameter on
PostgreSQL, peak memory under worst-case JSON bodies, and idle connections.

    bench/limits.py OLD_BINARY NEW_BINARY

Each build runs as a fresh node (PostgreSQL for the search, SQLite for the rest) with the
same settings, one after the other. Traffic goes to 127.0.0.1 only and every loop is bounded.
Needs PostgreSQL on 127.0.0.1:5432 (MEDMESH_TEST_POSTGRES) and psql.
"""
import concurrent.futures
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

PG = os.environ.get("MEDMESH_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def start(binary, data_dir, env_extra, database_url=None):
    env = dict(os.environ, MEDMESH_LOG="warn", **env_extra)
    args = [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"]
    if database_url:
        args += ["--database-url", database_url]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = None
    for line in proc.stdout:
        if line.startswith("medmesh listening on "):
            base = line.split("on ", 1)[1].strip()
            break
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(base + "/healthz", timeout=2).status == 200:
                break
        except Exception:
            time.sleep(0.05)
    tok = subprocess.run(
        [binary, "admin", "token", "--scope", "system/*.*", "--data-dir", data_dir]
        + (["--database-url", database_url] if database_url else []),
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    return proc, base, tok


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(method, url, tok, body=None, timeout=180):
    req = urllib.request.Request(url, data=body, method=method, headers={
        "Authorization": f"Bearer {tok}", "Content-Type": "application/fhir+json"})
    started = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception as e:  # timeout, reset
        status = type(e).__name__
    return status, time.time() - started


def search(binary, repeats):
    name = f"medmesh_bench_{uuid.uuid4().hex}"
    subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"CREATE DATABASE {name}"], check=True)
    url = f"{PG}/{name}"
    with tempfile.TemporaryDirectory() as d:
        proc, base, tok = start(binary, d, {}, url)
        try:
            q = "&".join(f"family=n{i}" for i in range(repeats))
            return request("GET", f"{base}/fhir/Patient?{q}", tok, timeout=120)
        finally:
            proc.terminate()
            proc.wait()
            subprocess.run(["psql", f"{PG}/postgres", "-qAtc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


def tiny_objects(size):
    item = b'{"given":["a"]},'
    head = b'{"resourceType":"Patient","name":['
    n = (size - len(head) - 20) // len(item)
    return head + item * n + b'{"given":["a"]}]}'


def memory(binary, parallel):
    body = tiny_objects(31 * 1024 * 1024)
    with tempfile.TemporaryDirectory() as d:
        # The same byte limit for both builds, so the difference is the parser's bound.
        proc, base, tok = start(binary, d, {"MEDMESH_MAX_BODY_BYTES": str(32 * 1024 * 1024)})
        try:
            before = peak_rss_mib(proc.pid)
            with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
                results = list(ex.map(lambda _: request("POST", f"{base}/fhir/Patient", tok, body), range(parallel)))
            return before, peak_rss_mib(proc.pid), [r[0] for r in results], max(r[1] for r in results)
        finally:
            proc.terminate()
            proc.wait()


def connections(binary, count):
    with tempfile.TemporaryDirectory() as d:
        proc, base, tok = start(binary, d, {})
        host, port = base.split("//")[1].split(":")
        socks = []
        try:
            for _ in range(count):
                try:
                    socks.append(socket.create_connection((host, int(port)), timeout=5))
                except OSError:
                    break
            time.sleep(1)
            at_once = open_fds(proc.pid)
            health_now = request("GET", f"{base}/healthz", tok, timeout=3)[0]
            time.sleep(12)  # past the default header-read timeout (10 s)
            later = open_fds(proc.pid)
            health_later = request("GET", f"{base}/healthz", tok, timeout=3)[0]
            return len(socks), at_once, health_now, later, health_later
        finally:
            for s in socks:
                s.close()
            proc.terminate()
            proc.wait()


def main():
    old, new = sys.argv[1], sys.argv[2]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    def row(*cells):
        print(" | ".join(cells), flush=True)

    for label, b in (("before", old), ("after", new)):
        for repeats in (160, 320):
            status, secs = search(b, repeats)
            row(label, f"PostgreSQL search, {repeats} x family=", f"{status} in {secs:.2f} s")
        for n in (1, 4):
            before, peak, statuses, secs = memory(b, n)
            row(label, f"{n} x 31 MB body of tiny objects", f"{statuses}, peak RSS {before:.0f} -> {peak:.0f} MiB, {secs:.1f} s")
        opened, at_once, h1, later, h2 = connections(b, 5000)
        row(label, f"{opened} idle connections", f"node fds {at_once} (healthz {h1}); after 13 s: {later} (healthz {h2})")


if __name__ == "__main__":
    main()
