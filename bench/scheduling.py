"""Scheduling: `$find` latency over many practitioners, and bookings per second under
conflicts, each beside a peer measured on the same node in the same run.

1. PRACTITIONERS practitioners (default 200), each with weekday hours 08:00-17:00
   Europe/Berlin, 20-minute visits with a 10-minute buffer, bookable 8 weeks ahead.
   `GET Appointment/$find` over all of them for the next 7 days (`_count=20`), sequentially
   from one client: p50 and p99. Peer: `GET Schedule?active=true&_count=200` (a plain FHIR
   search returning the same schedules), the same way.
2. Bookings: `POST Appointment/$book` of proposals from `$find` (the first times of every
   practitioner), from WORKERS concurrent clients (default 16), every proposal sent twice by
   two different clients for two patients, so about half the calls conflict: bookings/s and
   calls/s. Peer: `POST Appointment` (a plain create of a booked Appointment, no claim), the
   same number from the same clients. Both from `bench_node.post_all`, a client on asyncio
   streams with the requests encoded beforehand (the `requests` package took a fifth of the
   two cores).

usage: scheduling.py MEDMESH_BIN [sqlite|postgres] [PRACTITIONERS] [WORKERS] [TIMES]

TIMES (default 50 per client) is how many times are booked, each twice; 3000 keeps the
bookings going for about ten seconds (a sustained rate, not a burst).
"""

import datetime
import sys
import time

import requests

from bench_node import BenchNode, bundle, post_all

BIN = sys.argv[1]
DB = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
WORKERS = int(sys.argv[4]) if len(sys.argv) > 4 else 16
TIMES = int(sys.argv[5]) if len(sys.argv) > 5 else WORKERS * 50
EXT = "https://medmesh.dev/fhir/StructureDefinition/"


def seed(s, fhir):
    rs = [{"resourceType": "Organization", "id": "o", "name": "Bench Practice"},
          {"resourceType": "Location", "id": "l", "name": "Bench",
           "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Europe/Berlin"}]}]
    for i in range(N):
        rs.append({"resourceType": "Practitioner", "id": f"p{i}", "name": [{"family": f"Bench{i}"}]})
        rs.append({"resourceType": "PractitionerRole", "id": f"r{i}", "practitioner": {"reference": f"Practitioner/p{i}"},
                   "organization": {"reference": "Organization/o"}, "location": [{"reference": "Location/l"}],
                   "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394814009"}]}],
                   "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                                      "availableStartTime": "08:00:00", "availableEndTime": "17:00:00"}]})
        rs.append({"resourceType": "Schedule", "id": f"s{i}", "active": True,
                   "actor": [{"reference": f"PractitionerRole/r{i}"}, {"reference": "Location/l"}],
                   "serviceType": [{"text": "Consultation", "extension": [{"url": EXT + "visit-minutes", "valuePositiveInt": 20}]}],
                   "extension": [{"url": EXT + "booking-buffer-minutes", "valueUnsignedInt": 10},
                                 {"url": EXT + "booking-horizon-days", "valueUnsignedInt": 56}]})
    for i in range(0, len(rs), 500):
        r = s.post(fhir, json=bundle(rs[i:i + 500]), timeout=600)
        assert r.ok, r.text[:300]
    patients = [{"resourceType": "Patient", "id": f"b{i}"} for i in range(2 * TIMES)]
    for i in range(0, len(patients), 500):
        assert s.post(fhir, json=bundle(patients[i:i + 500]), timeout=600).ok


def window():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ"), (now + datetime.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")


def latencies(s, url, rounds):
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = s.get(url, timeout=60)
        out.append((time.perf_counter() - t) * 1000)
        assert r.ok, r.text[:300]
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99) - 1]


def main():
    node = BenchNode(BIN, DB)
    fhir, token = node.fhir, node.token
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    try:
        seed(s, fhir)
        start_at, end_at = window()
        find = f"{fhir}/Appointment/$find?start={start_at}&end={end_at}&_count=20"
        peer = f"{fhir}/Schedule?active=true&_count=200"
        for url in (find, peer):
            latencies(s, url, 20)  # warm-up
        rounds = 300
        f50, f99 = latencies(s, find, rounds)
        p50, p99 = latencies(s, peer, rounds)
        print(f"| $find over {N} practitioners, 7 days, {DB} | p50 {f50:.1f} ms, p99 {f99:.1f} ms | "
              f"peer Schedule search: p50 {p50:.1f} ms, p99 {p99:.1f} ms | p99 ratio {f99 / p99:.2f} |")

        # Proposals: the first free times of every practitioner, each booked twice.
        offers = []
        for i in range(N):
            r = s.get(f"{fhir}/Appointment/$find?practitioner=p{i}&start={start_at}&_count={TIMES // N + 1}", timeout=60)
            offers += [e["resource"] for e in r.json().get("entry", [])]
        offers = offers[:TIMES]
        calls = []
        for k, o in enumerate(offers):
            for twin in (0, 1):
                p = dict(o)
                p["participant"] = [x for x in o["participant"] if not x["actor"]["reference"].startswith("Patient/")] + \
                    [{"actor": {"reference": f"Patient/b{2 * k + twin}"}, "status": "accepted"}]
                calls.append({"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": p}]})
        # The twins go to different clients, close together in time.
        order = calls[0::2] + calls[1::2]
        statuses, took = post_all(f"{fhir}/Appointment/$book", token, order, WORKERS)
        booked = statuses.count(200)
        refused = statuses.count(409)
        assert booked + refused == len(statuses), {c: statuses.count(c) for c in set(statuses)}
        assert booked == len(offers), f"{booked} bookings of {len(offers)} times"

        def create(k):
            o = offers[k % len(offers)]
            return {"resourceType": "Appointment", "status": "booked", "start": o["start"], "end": o["end"],
                    "participant": [{"actor": {"reference": f"Patient/b{k % (2 * len(offers))}"}, "status": "accepted"}]}

        created, took_peer = post_all(f"{fhir}/Appointment", token, [create(k) for k in range(len(order))], WORKERS)
        assert created.count(201) == len(order), {c: created.count(c) for c in set(created)}
        print(f"| $book, {len(order)} calls for {len(offers)} times, {WORKERS} clients, {DB} | "
              f"{booked / took:.0f} bookings/s ({len(order) / took:.0f} calls/s, {refused} conflicts) | "
              f"peer POST Appointment: {len(order) / took_peer:.0f} creates/s | calls/s ratio {took_peer / took:.2f} |")
    finally:
        node.stop()


if __name__ == "__main__":
    main()
