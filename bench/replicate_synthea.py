#!/usr/bin/env python3
"""Writes N copies of the shared Synthea patient bundles with fresh ids.

Every urn:uuid, and every identifier value of the patients, becomes new in each copy, so each
copy is a new set of patients (the hospital and practitioner bundles are copied once).

    bench/replicate_synthea.py COPIES OUTDIR
"""
import json
import os
import re
import sys
import uuid

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "testdata", "fhir-r4-synthea-smart-generated-sample-data")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

copies, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
files = sorted(os.listdir(SRC))
info = [f for f in files if "Information" in f]
patients = [f for f in files if f not in info]
for f in info:
    with open(os.path.join(SRC, f), encoding="utf-8") as src, open(os.path.join(out, "0-" + f), "w", encoding="utf-8") as dst:
        dst.write(src.read())
texts = {f: open(os.path.join(SRC, f), encoding="utf-8").read() for f in patients}
# Organization and Practitioner ids are shared with the information bundles: keep them.
keep = set()
for f in info:
    keep.update(UUID.findall(open(os.path.join(SRC, f), encoding="utf-8").read()))
total = 0
for c in range(copies):
    for f, text in texts.items():
        mapping = {}
        def fresh(m):
            u = m.group(0)
            if u in keep:
                return u
            return mapping.setdefault(u, str(uuid.uuid4()))
        new = UUID.sub(fresh, text)
        bundle = json.loads(new)
        total += len(bundle["entry"])
        with open(os.path.join(out, f"{c:05d}-{f}"), "w", encoding="utf-8") as dst:
            json.dump(bundle, dst)
print(f"{copies} copies, {total} resources in patient bundles, in {out}")
