#!/usr/bin/env python3
"""Writes one Synthea patient grown to about N resources (default 5,000) as a transaction
Bundle: the patient's own Observations, Encounters, Conditions and immunizations repeated
with their dates moved back a year per copy, so the record reads as a long history.
    bench/big_patient.py OUT.json [N]
"""
import copy, glob, json, os, re, sys, uuid

out = sys.argv[1]
target = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
here = os.path.dirname(os.path.abspath(__file__))
src = glob.glob(os.path.join(here, '..', '..', 'shared', 'testdata',
                             'fhir-r4-synthea-smart-generated-sample-data', 'Trey_Leffler_*.json'))[0]
bundle = json.load(open(src))
entries = bundle['entry']
repeatable = [e for e in entries if e['resource']['resourceType'] in
              ('Observation', 'Encounter', 'Condition', 'Immunization', 'Procedure')]
date_re = re.compile(r'"(\d{4})(-\d\d-\d\d(?:T[^"]*)?)"')

def shifted(entry, years):
    e = copy.deepcopy(entry)
    old = e['fullUrl']
    new = 'urn:uuid:' + str(uuid.uuid4())
    text = json.dumps(e).replace(old, new)
    text = date_re.sub(lambda m: '"%04d%s"' % (int(m.group(1)) - years, m.group(2)), text)
    e = json.loads(text)
    e['resource'].pop('id', None)
    return e, old, new

grown = list(entries)
years = 1
while len(grown) < target:
    remap = {}
    batch = []
    for entry in repeatable:
        e, old, new = shifted(entry, years)
        remap[old] = new
        batch.append(e)
    # References between the copies (an Observation's encounter) follow their copy.
    text = json.dumps(batch)
    for old, new in remap.items():
        text = text.replace(old, new)
    grown.extend(json.loads(text)[: target - len(grown)])
    years += 1
bundle['entry'] = grown
json.dump(bundle, open(out, 'w'))
print(f'{len(grown)} resources in {out}')
