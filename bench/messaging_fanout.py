"""Message fan-out: CLIENTS live streams (`/api/messages/live`, Server-Sent Events) open on
one node, ten practitioners of one patient's care team with CLIENTS/10 devices each; the
patient sends ROUNDS messages to the team, one at a time, and each stream's delivery
latency is taken from just before the send to the moment the stream receives the event.
Beside it, the peer: the same clients against a minimal asyncio SSE broadcaster
(`sse_peer.py`, another process on loopback) that writes the same event to every stream
when told, which is the floor of fan-out to CLIENTS sockets on this machine.

    .venv/bin/python bench/messaging_fanout.py target/release/medmesh [sqlite|postgres] [CLIENTS] [ROUNDS]
"""

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from bench_node import BenchNode  # noqa: E402

PASSWORD = "a long enough passphrase\n"


def http(base, method, path, token, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return json.loads(text) if text else None


def put(node, resource_):
    http(node.fhir, "PUT", f"/{resource_['resourceType']}/{resource_['id']}", node.token, resource_)


def account(node, role, user, *extra):
    subprocess.run([node.bin, "admin", "create-user", "--role", role, "--username", user, *extra, *node.args],
                   input=PASSWORD, capture_output=True, text=True, env=node.env, check=True)
    scope = "patient/*.cruds" if role == "patient" else "user/*.cruds"
    return node.cli("admin", "token", "--scope", scope, "--user", user).stdout.strip()


class Streams:
    """Open streams: how many are ready, and when each heard each round."""

    def __init__(self):
        self.heard = {}
        self.tasks = []
        self.ready = 0


async def main():
    binary = sys.argv[1]
    db = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    node = BenchNode(binary, db, {"MEDMESH_MAX_CONNECTIONS": str(clients * 2 + 100)})
    peer = None
    try:
        put(node, {"resourceType": "Organization", "id": "o1", "name": "Fan-out Practice"})
        for i in range(10):
            put(node, {"resourceType": "Practitioner", "id": f"p{i}", "name": [{"family": f"Doctor{i}"}]})
        put(node, {"resourceType": "Patient", "id": "pat", "generalPractitioner": [{"reference": "Practitioner/p0"}]})
        tokens = [account(node, "practitioner", f"u{i}", "--practitioner", f"p{i}", "--organization", "o1",
                          "--verification", "verified") for i in range(10)]
        for i in range(10):
            http(node.base, "POST", "/api/patients/pat/care-team/members", tokens[0],
                 {"member": f"Practitioner/p{i}", "role": "nurse"})
        patient = account(node, "patient", "pat", "--patient", "pat")
        thread = http(node.base, "POST", "/api/messages/threads", patient, {"topic": "Fan-out"})["id"]
        host, port = node.base.replace("http://", "").split(":")

        def send_node(r):
            http(node.base, "POST", f"/api/messages/threads/{thread}/messages", patient, {"text": f"message {r}"})
            return thread

        ours = await measure_rounds("medmesh", host, int(port), "/api/messages/live", tokens, clients, rounds,
                                    send_node, thread)
        peer = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "sse_peer.py")],
                                stdout=subprocess.PIPE, text=True)
        peer_port = int(peer.stdout.readline().split()[-1])

        def send_peer(r):
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{peer_port}/send?data=m{r}",
                                                          method="POST")).read()
            return f"m{r}"

        theirs = await measure_rounds("peer", "127.0.0.1", peer_port, "/live", [None], clients, rounds, send_peer, "m")
        print(f"| fan-out to {clients} streams, {rounds} messages | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|")
        for label, m in (("medmesh", ours), ("peer (asyncio SSE broadcaster)", theirs)):
            print(f"| {label} | {m['p50']:.1f} | {m['p99']:.1f} | {m['max']:.1f} |")
        print(f"p99 ratio medmesh/peer: {ours['p99'] / theirs['p99']:.2f}; target p99 < 100 ms: "
              f"{'met' if ours['p99'] < 100 else 'NOT met'}")
    finally:
        node.stop()
        if peer:
            peer.kill()


async def measure_rounds(label, host, port, path, tokens, clients, rounds, send, want_prefix):
    """As `measure`, with each round's events keyed by round: a round's key is what `send`
    returns, and a stream counts an event for the round in progress."""
    streams = Streams()
    current = {"key": None}

    async def open_one(token):
        reader, writer = await asyncio.open_connection(host, port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        streams.ready += 1
        event = None
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode(errors="replace").strip()
            if text.startswith("event:"):
                event = text[6:].strip()
            elif text.startswith("data:") and event == "message":
                if text[5:].strip().startswith(want_prefix) and current["key"] is not None:
                    streams.heard.setdefault(current["key"], []).append(time.perf_counter())
                event = None

    for i in range(clients):
        streams.tasks.append(asyncio.create_task(open_one(tokens[i % len(tokens)])))
    for _ in range(1200):
        if streams.ready == clients:
            break
        await asyncio.sleep(0.05)
    assert streams.ready == clients, f"{label}: {streams.ready} of {clients} streams opened"
    latencies = []
    loop = asyncio.get_running_loop()
    for r in range(rounds):
        current["key"] = r
        start = time.perf_counter()
        await loop.run_in_executor(None, send, r)
        for _ in range(400):
            if len(streams.heard.get(r, [])) >= clients:
                break
            await asyncio.sleep(0.01)
        got = streams.heard.get(r, [])
        assert len(got) >= clients, f"{label}: round {r}: {len(got)} of {clients} streams heard it"
        round_ms = [(t - start) * 1000 for t in got[:clients]]
        latencies += round_ms
        print(f"{label} round {r}: slowest stream {max(round_ms):.1f} ms", file=sys.stderr)
        current["key"] = None
        await asyncio.sleep(0.3)
    for t in streams.tasks:
        t.cancel()
    latencies.sort()
    return {"p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max": latencies[-1]}


if __name__ == "__main__":
    asyncio.run(main())
