"""HL7 v2 end to end over MLLP: ORU^R01 results from 4 concurrent senders (the Python `hl7`
package's MLLPClient, one connection each) into a fresh node on SQLite, each message
persisted sealed, mapped, applied through the record service (patient, report, three
observations, audited) and acknowledged. Prints acknowledged messages/s.

usage: hl7_e2e.py MEDMESH_BIN [SECONDS] [SENDERS]
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

from hl7.client import MLLPClient

BIN = sys.argv[1]
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20
SENDERS = int(sys.argv[3]) if len(sys.argv) > 3 else 4


def oru(sender, i):
    pid = f"B{sender}-{i % 500}"
    return (
        f"MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|S{sender}-{i}|P|2.5.1\r"
        f"PID|1||{pid}^^^HOSP^MR||Doe^Jane||19800101|F\r"
        f"OBR|1||ORD-{sender}-{i}^LAB|24323-8^Metabolic panel^LN|||20240101110000\r"
        f"OBX|1|NM|2345-7^Glucose^LN||{90 + i % 50}|mg/dL|70-99|N|||F\r"
        f"OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F\r"
        f"OBX|3|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F\r"
    )


def main():
    data = tempfile.mkdtemp(prefix="hl7-e2e-")
    config = os.path.join(data, "medmesh.toml")
    open(config, "w").write('[[hl7_sender]]\nname = "lab"\naddresses = ["127.0.0.1"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDMESH_")}
    env.update({"MEDMESH_CONFIG": config, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0", "MEDMESH_LOG": "warn"})
    node = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = node.stdout.readline()
        assert line.startswith("medmesh MLLP listening on "), line
        host, port = line.split(" on ", 1)[1].strip().rsplit(":", 1)
        node.stdout.readline()
        counts = [0] * SENDERS
        errors = []
        stop = time.monotonic() + SECONDS
        # A warm-up message per sender, untimed.
        for s in range(SENDERS):
            with MLLPClient(host, int(port)) as c:
                c.send_message(oru(s, 10_000_000))

        def run(s):
            with MLLPClient(host, int(port)) as c:
                i = 0
                while time.monotonic() < stop:
                    ack = c.send_message(oru(s, i))
                    if b"MSA|AA|" not in ack:
                        errors.append(ack[:200])
                        return
                    counts[s] += 1
                    i += 1

        threads = [threading.Thread(target=run, args=(s,)) for s in range(SENDERS)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        assert not errors, errors[0]
        total = sum(counts)
        print(f"ORU^R01 over MLLP, {SENDERS} senders, SQLite: {total} acknowledged in {elapsed:.1f} s = {total / elapsed:.0f} messages/s")
    finally:
        node.kill()
        node.wait()


main()
