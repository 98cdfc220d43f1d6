"""The notification hub against a real SMTP server on loopback (aiosmtpd): a patient who
chose e-mail for results is mailed when a final result arrives over HL7 v2, and for an
emergency access when a clinician breaks the glass; node admins are mailed the interface
engine's alerts; the mail names no patient data; a notification is sent once; one the
server refuses is kept as failed for an operator."""

import email
import email.utils
import http.server
import threading
import os
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from hl7.client import MLLPClient
from standardwebhooks.webhooks import Webhook

from conftest import BIN, Node

FAMILY = "Quellingham"
RESULT = (
    "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|{control}|P|2.5.1\r"
    "PID|1||NTF-1^^^HOSP^MR||" + FAMILY + "^Ada||19800101|F\r"
    "OBR|1||ORD-{control}^LAB|2345-7^Glucose^LN|||20240101110000\r"
    "OBX|1|NM|2345-7^Glucose^LN||187|mg/dL|70-99|H|||F\r"
)


class Inbox:
    """Collects what the SMTP server is given; refuses mail to refuse@ addresses."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse@"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mail_node(db, config, extra_env=None):
    """A node on `db` mailing through an aiosmtpd server on loopback, with `config` added to
    its configuration file; returns the node, what the server received, and the server."""
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(
        f'smtp_url = "smtp://127.0.0.1:{port}"\n'
        'smtp_from = "Test Node <node@node.test>"\n'
        'node_name = "Test Node"\n' + config
    )
    cfg.close()
    return Node(db, extra_env={"MEDMESH_CONFIG": cfg.name, **(extra_env or {})}), inbox, smtp


@pytest.fixture(params=["sqlite", "postgres"])
def hub(request):
    n, inbox, smtp = mail_node(
        request.param,
        "hl7_check_seconds = 1\n"
        "webhooks_allow_internal = true\n"
        '[[hl7_sender]]\nname = "lab"\naddresses = ["127.0.0.1"]\n',
        {"MEDMESH_MLLP_LISTEN": "127.0.0.1:0"},
    )
    yield n, inbox
    n.close()
    smtp.stop()
    os.unlink(n.env["MEDMESH_CONFIG"])


def wait_for(predicate, what, seconds=30):
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, f"{what} never happened"
        time.sleep(0.05)


def send(node, message):
    with MLLPClient(*node.mllp) as client:
        return client.send_message(message.replace("\n", "\r")).decode("utf-8", "replace")


def result_patient(node):
    """The id of the patient the RESULT messages are about."""
    return requests.get(
        f"{node.url}/Patient?identifier=urn:medmesh:hl7v2/id/HOSP%7CNTF-1",
        headers={"Authorization": f"Bearer {node.token}"}, timeout=30,
    ).json()["entry"][0]["resource"]["id"]


def cli(node, *args, stdin=None):
    out = subprocess.run([BIN, *args, *node.args], capture_output=True, text=True, env=node.env, input=stdin)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_results_and_alerts_are_mailed_once_and_name_no_patient(hub):
    node, inbox = hub
    # The patient's record exists before their account chooses e-mail.
    assert "MSA|AA" in send(node, RESULT.format(control="N-1"))
    patient = result_patient(node)
    shown = cli(node, "notifications", "settings", "--patient", patient,
                "--email", "ada@example.org", "--choose", "results=inbox,email")
    assert "results\tinbox,email" in shown and "ada@example.org" in shown
    # A node admin, told of operations by e-mail (the default once an address is set).
    cli(node, "admin", "create-user", "--role", "node-admin", "--username", "ops", stdin="a long enough password 1\n")
    cli(node, "notifications", "settings", "--user", "ops", "--email", "ops@example.org")

    assert "MSA|AA" in send(node, RESULT.format(control="N-2"))
    wait_for(lambda: any("ada@example.org" in to for to, _ in inbox.messages), "the result's e-mail")
    to, mail = next((to, m) for to, m in inbox.messages if "ada@example.org" in to)
    assert mail["Subject"] == "New results at Test Node"
    assert email.utils.parseaddr(mail["From"]) == ("Test Node", "node@node.test")
    assert mail["Message-ID"].startswith("<")
    text = mail.get_payload(decode=True).decode()
    assert "new results in your record at Test Node" in text
    for phi in (FAMILY, "Glucose", "187", "NTF-1", "1980"):
        assert phi not in text and phi not in mail["Subject"], phi

    # A message with no mapping is a dead letter; the admins are told within a check.
    assert "MSA|AE" in send(node, "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ZZZ^Z01|N-3|P|2.5.1\rPID|1||NTF-1^^^HOSP^MR\r")
    wait_for(lambda: any("ops@example.org" in to for to, _ in inbox.messages), "the alert's e-mail")
    alert = next(m for to, m in inbox.messages if "ops@example.org" in to)
    assert alert["Subject"] == "Operations alert at Test Node"
    body = alert.get_payload(decode=True).decode()
    assert "could not be applied" in body and FAMILY not in body

    # Each once: the patient's result notice (one per result message), the alert once an hour.
    time.sleep(2.5)  # two more alert checks, which must not mail again
    assert sum("ops@example.org" in to for to, _ in inbox.messages) == 1
    assert sum("ada@example.org" in to for to, _ in inbox.messages) == 1
    counts = cli(node, "notifications", "counts")
    assert "email\tdelivered\t2" in counts, counts


def test_a_refused_address_is_kept_as_failed_and_can_be_retried(hub):
    node, inbox = hub
    cli(node, "admin", "create-user", "--role", "node-admin", "--username", "ops", stdin="a long enough password 1\n")
    cli(node, "notifications", "settings", "--user", "ops", "--email", "refuse@example.org")
    assert "MSA|AE" in send(node, "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ZZZ^Z01|F-1|P|2.5.1\rPID|1||F-1^^^HOSP^MR\r")
    wait_for(lambda: "\tfailed\t" in cli(node, "notifications", "counts"), "the refusal")
    failed = cli(node, "notifications", "failed")
    row = failed.splitlines()[1].split("\t")
    assert row[3:5] == ["operations", "email"] and "550" in row[6], failed
    assert "refuse@" not in failed
    # The operator fixes the address and puts it back in the queue.
    cli(node, "notifications", "settings", "--user", "ops", "--email", "ops@example.org")
    cli(node, "notifications", "retry", row[0])
    wait_for(lambda: any("ops@example.org" in to for to, _ in inbox.messages), "the retried e-mail")


def test_an_emergency_access_is_mailed_to_a_patient_who_chose_it(hub):
    node, inbox = hub
    auth = {"Authorization": f"Bearer {node.token}"}
    patient = requests.post(f"{node.url}/Patient", json={"resourceType": "Patient", "name": [{"family": FAMILY}]},
                            headers=auth, timeout=30).json()["id"]
    for path, body in (("Organization/h", {"resourceType": "Organization", "id": "h", "name": "General"}),
                       ("Practitioner/er", {"resourceType": "Practitioner", "id": "er"})):
        assert requests.put(f"{node.url}/{path}", json=body, headers=auth, timeout=30).ok
    cli(node, "notifications", "settings", "--patient", patient, "--email", "ada@example.org",
        "--choose", "break-glass=inbox,email")
    cli(node, "admin", "create-user", "--role", "practitioner", "--username", "er", "--practitioner", "er",
        "--organization", "h", "--verification", "verified", stdin="a long enough password 1\n")
    er = cli(node, "admin", "token", "--scope", "user/*.cruds", "--user", "er").strip()
    r = requests.post(f"{node.base}/api/patients/{patient}/break-glass", json={"reason": "unconscious in ER"},
                      headers={"Authorization": f"Bearer {er}"}, timeout=30)
    assert r.status_code == 201, r.text
    wait_for(lambda: any("ada@example.org" in to for to, _ in inbox.messages), "the emergency access e-mail")
    mail = next(m for to, m in inbox.messages if "ada@example.org" in to)
    assert mail["Subject"] == "Emergency access at Test Node"
    body = mail.get_payload(decode=True).decode()
    # Neither the reason, nor who declared it, nor the patient's name.
    for secret in ("unconscious", "Practitioner", FAMILY):
        assert secret not in body and secret not in mail["Subject"], secret


class Hooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps each POST's headers and body."""
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        Hooks.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_is_signed_as_standard_webhooks_says(hub):
    node, _ = hub
    Hooks.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert "MSA|AA" in send(node, RESULT.format(control="W-1"))
        patient = result_patient(node)
        url = f"http://127.0.0.1:{server.server_port}/hook"
        shown = cli(node, "notifications", "settings", "--patient", patient, "--webhook", url,
                    "--choose", "results=inbox,webhook")
        secret = next(l.split("\t")[1] for l in shown.splitlines() if l.startswith("webhook secret"))
        assert secret.startswith("whsec_") and f"webhook\t{url}" in shown
        # Shown once: listing the settings again does not show it.
        assert secret not in cli(node, "notifications", "settings", "--patient", patient)

        assert "MSA|AA" in send(node, RESULT.format(control="W-2"))
        wait_for(lambda: Hooks.received, "the webhook")
        headers, body = Hooks.received[0]
        # The reference library verifies the signature, the id and the timestamp.
        payload = Webhook(secret).verify(body, headers)
        assert payload["type"] == "notification.results"
        assert payload["data"]["subject"] == "New results at Test Node"
        assert headers["webhook-id"].startswith("msg_")
        # The node's own address is in the text and may hold any digits (its port): the
        # patient's values are looked for in everything else.
        text = body.replace(node.base.encode(), b"")
        assert len(text) < len(body), "the text names the node's address"
        for phi in (FAMILY, "Glucose", "187", "NTF-1"):
            assert phi.encode() not in text, phi
        # A wrong secret does not verify.
        with pytest.raises(Exception):
            Webhook("whsec_" + "A" * 32).verify(body, headers)
    finally:
        server.shutdown()


def test_a_webhook_into_the_nodes_own_networks_is_refused(hub):
    node, _ = hub
    out = subprocess.run(
        [BIN, "notifications", "settings", "--user", "nobody-yet", *node.args],
        capture_output=True, text=True, env=node.env,
    )
    assert out.returncode != 0
    cli(node, "admin", "create-user", "--role", "node-admin", "--username", "ops", stdin="a long enough password 1\n")
    strict = {**node.env, "MEDMESH_WEBHOOKS_ALLOW_INTERNAL": "false"}
    for url in ("http://hooks.example.org/x", "https://127.0.0.1/x", "https://169.254.169.254/latest", "https://[::1]/x"):
        out = subprocess.run([BIN, "notifications", "settings", "--user", "ops", "--webhook", url, *node.args],
                             capture_output=True, text=True, env=strict)
        assert out.returncode != 0, url
        assert "https://" in out.stderr or "own networks" in out.stderr, out.stderr


def test_two_nodes_on_one_database_deliver_each_notification_once():
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'smtp_url = "smtp://127.0.0.1:{port}"\nnode_name = "Test Node"\n'
              '[[hl7_sender]]\nname = "lab"\naddresses = ["127.0.0.1"]\n')
    cfg.close()
    env = {"MEDMESH_CONFIG": cfg.name, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0"}
    a = Node("postgres", extra_env=env)
    # The second replica: the same database and the same key-encryption key.
    db_url = a.args[a.args.index("--database-url") + 1]
    key = os.path.join(a.dir.name, "master.key")
    b = Node("sqlite", extra_args=["--database-url", db_url], extra_env={**env, "MEDMESH_MASTER_KEY_FILE": key})
    try:
        assert "MSA|AA" in send(a, RESULT.format(control="R-0"))
        patient = result_patient(a)
        cli(a, "notifications", "settings", "--patient", patient, "--email", "ada@example.org",
            "--choose", "results=email")
        # Results arrive at both replicas; both replicas' workers deliver.
        total = 20
        for i in range(1, total + 1):
            assert "MSA|AA" in send(a if i % 2 else b, RESULT.format(control=f"R-{i}"))
        wait_for(lambda: len(inbox.messages) >= total, f"{total} e-mails")
        time.sleep(3)  # further polls of both workers, which must not send any again
        ids = [m["Message-ID"] for _, m in inbox.messages]
        assert len(ids) == total and len(set(ids)) == total, ids
        assert f"email\tdelivered\t{total}" in cli(a, "notifications", "counts")
    finally:
        b.close()
        a.close()
        smtp.stop()
        os.unlink(cfg.name)
