"""Reminders: how fast the notification hub delivers appointment reminders to SMTP, beside a
plain SMTP client sending the same number of messages to the same server in the same run.

1. A fresh node mailing through an aiosmtpd server on loopback, with N practitioners
   (default 10,000) bookable all day in 20-minute visits, and 10 patients who chose e-mail
   for appointments.
2. N appointments booked with `$book`, all at one time T0 about two hours ahead, each with
   one reminder whose offset puts it due at one moment, DUE seconds after the node started
   (default 240; the bookings must be done by then, or their reminders would be behind them
   and not queued).
3. Timed: from that moment to the N-th reminder received by the SMTP server (each reminder is
   told from the outbox when due, which queues its e-mail, which is then sent).
4. Peer: Python's smtplib sending N messages of the same size to the same server over one
   connection.

usage: reminders.py MEDMESH_BIN [sqlite|postgres] [N] [DUE]
"""

import concurrent.futures
import datetime
import smtplib
import socket
import sys
import threading
import time

import requests
from aiosmtpd.controller import Controller

from bench_node import BenchNode, bundle

BIN = sys.argv[1]
DB = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
DUE = int(sys.argv[4]) if len(sys.argv) > 4 else 240
WORKERS = 16
PATIENTS = 10
EXT = "https://medmesh.dev/fhir/StructureDefinition/"


class Counter:
    """Counts what the server takes, with the time of each."""

    def __init__(self):
        self.times = []
        self.sizes = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.times.append(time.time())
            self.sizes.append(len(envelope.content))
        return "250 OK"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    counter = Counter()
    smtp_port = free_port()
    smtp = Controller(counter, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    # T0 on the 20-minute grid, about two hours ahead.
    t0 = now + datetime.timedelta(hours=2)
    t0 = t0.replace(minute=(t0.minute // 20) * 20)
    due_at = time.time() + DUE
    offset = int(t0.timestamp() - due_at)
    node = BenchNode(BIN, DB, {"MEDMESH_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
                               "MEDMESH_APPOINTMENT_REMINDERS": f"{offset}s"})
    try:
        fhir, token = node.fhir, node.token
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        rs = [{"resourceType": "Organization", "id": "o", "name": "Bench Practice"},
              {"resourceType": "Location", "id": "l", "name": "Bench",
               "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "UTC"}]}]
        rs += [{"resourceType": "Patient", "id": f"b{k}"} for k in range(PATIENTS)]
        for i in range(N):
            rs.append({"resourceType": "Practitioner", "id": f"p{i}"})
            rs.append({"resourceType": "PractitionerRole", "id": f"r{i}", "practitioner": {"reference": f"Practitioner/p{i}"},
                       "organization": {"reference": "Organization/o"}, "location": [{"reference": "Location/l"}],
                       "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "allDay": True}]})
            rs.append({"resourceType": "Schedule", "id": f"s{i}", "active": True,
                       "actor": [{"reference": f"PractitionerRole/r{i}"}, {"reference": "Location/l"}],
                       "serviceType": [{"text": "Consultation", "extension": [{"url": EXT + "visit-minutes", "valuePositiveInt": 20}]}],
                       "extension": [{"url": EXT + "booking-horizon-days", "valueUnsignedInt": 2}]})
        for i in range(0, len(rs), 500):
            r = s.post(fhir, json=bundle(rs[i:i + 500]), timeout=600)
            assert r.ok, r.text[:300]
        for k in range(PATIENTS):
            node.cli("notifications", "settings", "--patient", f"b{k}", "--email", f"bench{k}@example.org",
                     "--choose", "appointments=email")
        end = t0 + datetime.timedelta(minutes=20)
        r = s.get(f"{fhir}/Appointment/$find?practitioner=p0&start={iso(t0)}&end={iso(end)}&_count=1", timeout=60)
        template = r.json()["entry"][0]["resource"]
        assert template["start"].startswith(iso(t0)[:16]), template["start"]
        local = threading.local()

        def book(i):
            if not hasattr(local, "s"):
                local.s = requests.Session()
                local.s.headers["Authorization"] = f"Bearer {token}"
            a = dict(template)
            a["participant"] = [{"actor": {"reference": f"Practitioner/p{i}"}, "status": "accepted"},
                                {"actor": {"reference": f"Patient/b{i % PATIENTS}"}, "status": "accepted"}]
            a["extension"] = [e if not e["url"].endswith("appointment-schedule") else
                              {"url": e["url"], "valueReference": {"reference": f"Schedule/s{i}"}} for e in template["extension"]]
            body = {"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": a}]}
            return local.s.post(f"{fhir}/Appointment/$book", json=body, timeout=120).status_code

        t = time.time()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            statuses = list(pool.map(book, range(N)))
        booked_in = time.time() - t
        assert statuses.count(200) == N, {c: statuses.count(c) for c in set(statuses)}
        left = due_at - time.time()
        assert left > 5, f"booking took {booked_in:.0f} s: raise DUE above {DUE}"
        print(f"booked {N} in {booked_in:.1f} s; reminders due in {left:.0f} s", file=sys.stderr)
        deadline = due_at + 600
        while len(counter.times) < N and time.time() < deadline:
            time.sleep(0.2)
        got = len(counter.times)
        assert got >= N, f"only {got} of {N} reminders arrived"
        took = counter.times[N - 1] - due_at
        size = sum(counter.sizes) // len(counter.sizes)
    finally:
        node.stop()

    # The peer: N messages of the same size over one connection.
    body = "x" * max(size - 200, 10)
    before = len(counter.times)
    t = time.time()
    with smtplib.SMTP("127.0.0.1", smtp_port) as c:
        for k in range(N):
            c.sendmail("bench@example.org", [f"bench{k % PATIENTS}@example.org"],
                       f"Subject: peer {k}\r\n\r\n{body}\r\n")
    peer = time.time() - t
    assert len(counter.times) - before == N
    smtp.stop()
    print(f"| {N} reminders due at once, delivered to SMTP, {DB} | {took:.1f} s ({N / took:.0f}/s) | "
          f"peer smtplib, one connection: {peer:.1f} s ({N / peer:.0f}/s) | ratio {peer / took:.2f} |")


if __name__ == "__main__":
    main()
