"""Real third-party FHIR clients against a running medmesh node."""

import pytest
from fhirpy import SyncFHIRClient
from fhirclient import client as smart_client
from fhirclient.models.fhirsearch import FHIRSearch
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient as SmartPatient


def fhirpy_client(node):
    return SyncFHIRClient(node.url, authorization=f"Bearer {node.token}")


def test_fhirpy_create_read_update_search_page_include(node):
    c = fhirpy_client(node)
    org = c.resource("Organization", name="Clinic")
    org.save()
    ids = []
    for i in range(12):
        p = c.resource("Patient", name=[{"family": "Pyclient", "given": [f"N{i}"]}], gender="female", managingOrganization=org.to_reference())
        p.save()
        ids.append(p.id)
    assert p.meta["versionId"] == "1"

    got = c.reference("Patient", ids[0]).to_resource()
    assert got["name"][0]["family"] == "Pyclient"
    got["gender"] = "other"
    got.save()
    assert c.reference("Patient", ids[0]).to_resource()["gender"] == "other"
    assert got.meta["versionId"] == "2"

    search = c.resources("Patient").search(family="pyclient").limit(5)
    assert search.count() == 12
    everyone = search.fetch_all()  # follows the next links, page by page
    assert sorted(r.id for r in everyone) == sorted(ids)
    assert len(search.fetch()) == 5

    raw = c.resources("Patient").search(_id=ids[1]).include("Patient", "organization").fetch_raw()
    kinds = sorted(e["resource"]["resourceType"] for e in raw["entry"])
    assert kinds == ["Organization", "Patient"]
    assert c.resources("Patient").search(gender="other").count() == 1


def test_fhirpy_transaction(node):
    c = fhirpy_client(node)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:3d2a8e2e-0c39-4a0e-9a49-6c0a7b0c1a01", "resource": {"resourceType": "Patient", "name": [{"family": "Txpy"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "subject": {"reference": "urn:uuid:3d2a8e2e-0c39-4a0e-9a49-6c0a7b0c1a01"}}, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    resp = c.execute("", method="post", data=bundle)
    assert resp["type"] == "transaction-response"
    assert [e["response"]["status"] for e in resp["entry"]] == ["201 Created", "201 Created"]
    pid = resp["entry"][0]["response"]["location"].split("/")[1]
    obs = c.resources("Observation").search(subject=f"Patient/{pid}").fetch()
    assert len(obs) == 1 and obs[0]["subject"]["reference"] == f"Patient/{pid}"


def test_fhirclient_models(node):
    smart = smart_client.FHIRClient(settings={"app_id": "medmesh-tests", "api_base": node.url})
    smart.server.session.headers["Authorization"] = f"Bearer {node.token}"
    p = SmartPatient({"gender": "male"})
    name = HumanName()
    name.family = "Smartclient"
    name.given = ["Sam"]
    p.name = [name]
    created = p.create(smart.server)
    pid = created["id"] if created else None
    assert pid, "create returns the stored resource"
    read = SmartPatient.read(pid, smart.server)
    assert read.name[0].family == "Smartclient"
    read.gender = "unknown"
    read.update(smart.server)
    assert SmartPatient.read(pid, smart.server).gender == "unknown"
    for i in range(4):
        q = SmartPatient({"name": [{"family": "Smartclient", "given": [f"G{i}"]}]})
        q.create(smart.server)
    search = FHIRSearch(SmartPatient, {"family": "smartclient", "_count": "2"})
    found = list(search.perform_resources_iter(smart.server))
    assert len(found) == 5 and all(isinstance(f, SmartPatient) for f in found)
