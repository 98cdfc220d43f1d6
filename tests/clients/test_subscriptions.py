"""FHIR Subscriptions with the Python FHIR clients: a patient's app writes an R4-backport
Subscription built with `fhirclient`'s models and posted with `fhirpy`; a receiver on
loopback gets the handshake and a result's notification, each a Bundle that `fhirclient`'s
strict R4 models read; `$status` counts the event."""

import http.server
import json
import subprocess
import threading
import time

import requests
from fhirclient.models.bundle import Bundle
from fhirclient.models.extension import Extension
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.subscription import Subscription, SubscriptionChannel
from fhirpy import SyncFHIRClient

from conftest import BIN, Node

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
RESULT_TOPIC = "https://medmesh.dev/fhir/SubscriptionTopic/result"


class Receiver(http.server.BaseHTTPRequestHandler):
    """Keeps each notification's headers and body."""
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(n):
    deadline = time.time() + 30
    while len(Receiver.received) < n:
        assert time.time() < deadline, f"{len(Receiver.received)} notifications, not {n}"
        time.sleep(0.05)
    return Receiver.received


def status_parameter(bundle, name):
    params = bundle["entry"][0]["resource"]["parameter"]
    return next(p for p in params if p["name"] == name)


def test_a_patients_app_subscribes_to_results():
    Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    node = Node("sqlite", extra_env={"MEDMESH_WEBHOOKS_ALLOW_INTERNAL": "true"})
    try:
        system = requests.Session()
        system.headers["Authorization"] = f"Bearer {node.token}"
        assert system.put(f"{node.url}/Patient/pq", json={"resourceType": "Patient", "id": "pq"}).ok
        made = subprocess.run([BIN, "admin", "create-user", "--role", "patient", "--username", "quinn",
                               "--patient", "pq", *node.args], input="a long enough password 1\n",
                              capture_output=True, text=True, env=node.env)
        assert made.returncode == 0, made.stderr
        token = node.cli("admin", "token", "--user", "quinn", "--scope", "patient/*.rs").stdout.strip()

        # The Subscription as fhirclient's R4 model builds it.
        sub = Subscription()
        sub.status = "requested"
        sub.reason = "my lab results"
        sub.criteria = RESULT_TOPIC
        criteria = Extension()
        criteria.url = BACKPORT + "backport-filter-criteria"
        criteria.valueString = "DiagnosticReport?patient=Patient/pq"
        channel = SubscriptionChannel()
        channel.type = "rest-hook"
        channel.endpoint = f"http://127.0.0.1:{server.server_port}/results"
        channel.payload = "application/fhir+json"
        channel.header = ["Authorization: Bearer app-secret"]
        sub.channel = channel
        body = sub.as_json()
        body["_criteria"] = {"extension": [criteria.as_json()]}
        body["channel"]["_payload"] = {"extension": [{"url": BACKPORT + "backport-payload-content",
                                                      "valueCode": "full-resource"}]}

        app = SyncFHIRClient(node.url, authorization=f"Bearer {token}")
        created = app.resource("Subscription", **body)
        created.save()
        assert created.id and created["status"] == "requested"
        handshake = wait_for(1)[0]
        assert handshake[0]["authorization"] == "Bearer app-secret"
        assert status_parameter(handshake[1], "type")["valueCode"] == "handshake"
        Bundle(handshake[1], strict=True)

        report = {"resourceType": "DiagnosticReport", "id": "rq", "status": "final",
                  "subject": {"reference": "Patient/pq"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]}}
        assert system.put(f"{node.url}/DiagnosticReport/rq", json=report).ok
        headers, told = wait_for(2)[1]
        assert headers["content-type"] == "application/fhir+json"
        # fhirclient's strict R4 models read the notification, the focus included.
        parsed = Bundle(told, strict=True)
        assert parsed.type == "history"
        focus = FHIRElementFactory.instantiate("DiagnosticReport", parsed.entry[1].resource.as_json())
        assert focus.id == "rq" and focus.status == "final"
        assert status_parameter(told, "events-since-subscription-start")["valueString"] == "1"

        read = app.resources("Subscription").search(_id=created.id).fetch()
        assert [r.id for r in read] == [created.id]
        status = requests.get(f"{node.url}/Subscription/{created.id}/$status",
                              headers={"Authorization": f"Bearer {token}"}).json()
        Bundle(status, strict=True)
        assert status_parameter(status, "status")["valueCode"] == "active"
        assert status_parameter(status, "events-since-subscription-start")["valueString"] == "1"
    finally:
        node.close()
        server.shutdown()
