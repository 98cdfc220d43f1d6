"""HL7 v2 over MLLP, sent by a real third-party sender (the Python `hl7` package's
MLLPClient): every shared sample gets an AA, or an AE/AR whose reason is asserted; results
land as FHIR resources; a resend is acknowledged again and not applied twice; an unknown
sender is refused."""

import os
import re
import subprocess
import tempfile

import hl7
import pytest
import requests
from hl7.client import MLLPClient

from conftest import BIN, Node

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "testdata")
SUPPORTED = {"ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A06", "ADT^A07", "ADT^A08",
             "ADT^A11", "ADT^A12", "ADT^A13", "ADT^A28", "ADT^A31", "ADT^A40", "ORU^R01", "ORM^O01",
             "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26", "MDM^T02",
             "MDM^T04", "MDM^T06", "MDM^T08", "MDM^T10", "RDE^O11", "RDS^O13", "VXU^V04"}


def samples():
    """Every message of every shared HL7 v2 file, as bytes (files with several are split)."""
    out = []
    for d in sorted(os.listdir(SHARED)):
        if not d.startswith("hl7v2-"):
            continue
        for name in sorted(os.listdir(os.path.join(SHARED, d))):
            data = open(os.path.join(SHARED, d, name), "rb").read()
            if b"MSH" not in data:
                continue
            # A file may start with a byte-order mark, which is sent as it is.
            starts = [m.start() for m in re.finditer(rb"(?:^(?:\xef\xbb\xbf)?|[\r\n])MSH", data)]
            for i, at in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else len(data)
                out.append((f"{d}/{name}#{i}", data[at:end].lstrip(b"\r\n")))
    assert len(out) > 140, "the shared HL7 v2 samples are missing"
    return out


def config(**sender):
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write("[[hl7_sender]]\n")
    for k, v in {"name": "hospital", "addresses": ["127.0.0.1"], **sender}.items():
        f.write(f"{k} = {v!r}\n".replace("'", '"'))
    f.close()
    return f.name


@pytest.fixture(params=["sqlite", "postgres"])
def engine_node(request):
    cfg = config()
    n = Node(request.param, extra_env={"MEDMESH_CONFIG": cfg, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0"})
    yield n
    n.close()
    os.unlink(cfg)


def ack_of(raw):
    ack = hl7.parse(raw.strip(b"\x0b\x1c\r").decode("utf-8", "replace"))
    msa = ack.segment("MSA")
    err = [str(s) for s in ack if str(s[0]) == "ERR"]
    text = ack.unescape(str(msa[3])) if len(msa) > 3 else ""
    return str(msa[1]), str(msa[2]), text, err


def header(raw):
    """MSH-9 as CODE^TRIGGER, and MSH-10."""
    first = raw.removeprefix(b"\xef\xbb\xbf").split(b"\r")[0].split(b"\n")[0].decode("latin-1")
    fields = first.split(first[3])
    msh9 = fields[8].split(first[4])
    kind = f"{msh9[0]}^{msh9[1]}" if len(msh9) > 1 else msh9[0]
    return kind, fields[9].strip() if len(fields) > 9 else ""


def fhir(node, path):
    r = requests.get(f"{node.url}/{path}", headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_shared_sample_is_acknowledged(engine_node):
    codes = {}
    seen = {}
    with MLLPClient(*engine_node.mllp) as client:
        for name, raw in samples():
            code, control, text, errs = ack_of(client.send_message(raw))
            kind, control_id = header(raw)
            codes[code] = codes.get(code, 0) + 1
            if seen.setdefault(control_id, kind) != kind:
                # A sample reuses another's control id for another kind of message.
                assert code == "AE" and "already used" in text, name
            elif not control_id:
                assert (code, text) == ("AE", "MSH-10 (message control id) is empty"), name
            elif kind in SUPPORTED and code == "AE":
                # The samples reuse identifiers between unrelated people: the engine refuses
                # to guess which record is meant rather than write to the wrong one. A few
                # lack what their kind needs (an OBR, an order number, a document's content).
                assert any(why in text for why in (
                    "more than one record matches", "an order needs an OBR segment",
                    "no placer or filler order number", "the document has no content")), f"{name}: {text}"
            elif kind in SUPPORTED:
                assert code == "AA", f"{name}: {kind}: {code} {text} {errs}"
            else:
                assert code == "AE", f"{name}: {kind}: {code}"
                assert f"no mapping for {kind}" in text, f"{name}: {text}"
                assert errs and "200" in errs[0]
    # Many samples reuse one control id (MSG00001) across kinds: only the first of each is new.
    assert codes["AA"] >= 10
    # Results are FHIR resources now: the lab's red cells, with units and status.
    obs = fhir(engine_node, "Observation?code=http://loinc.org|11273-0")
    values = [e["resource"]["valueQuantity"]["value"] for e in obs.get("entry", [])]
    assert 4.06 in values
    assert fhir(engine_node, "DiagnosticReport?_summary=count")["total"] >= 2


def test_a_resend_is_acknowledged_again_and_not_applied_twice(engine_node):
    msg = ("MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|RESEND-1|P|2.5.1\r"
           "PID|1||R-42^^^HOSP^MR||Doe^Jane||19800101|F\r"
           "OBR|1||ORD-R1^LAB|2345-7^Glucose^LN|||20240101110000\r"
           "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F\r")
    with MLLPClient(*engine_node.mllp) as client:
        first = ack_of(client.send_message(msg))
        again = ack_of(client.send_message(msg))
    assert first[0] == again[0] == "AA"
    assert first[1] == again[1] == "RESEND-1"
    obs = fhir(engine_node, "Observation?code=http://loinc.org|2345-7")
    assert len(obs["entry"]) == 1
    assert obs["entry"][0]["resource"]["meta"]["versionId"] == "1"
    # A corrected result updates the same observation.
    corrected = msg.replace("RESEND-1", "RESEND-2").replace("||105|", "||99|").replace("|F\r", "|C\r")
    with MLLPClient(*engine_node.mllp) as client:
        assert ack_of(client.send_message(corrected))[0] == "AA"
    obs = fhir(engine_node, "Observation?code=http://loinc.org|2345-7")
    assert len(obs["entry"]) == 1
    assert obs["entry"][0]["resource"]["status"] == "corrected"
    assert obs["entry"][0]["resource"]["valueQuantity"]["value"] == 99


def test_bad_messages_get_a_reason(engine_node):
    with MLLPClient(*engine_node.mllp) as client:
        code, _, text, errs = ack_of(client.send_message("PID|1||x\r"))
        assert code == "AR" and "no MSH" in text
        code, _, text, _ = ack_of(client.send_message(
            "MSH|^~\\&|LAB|H|||2024||ORU^R01|BAD-1|P|2.5\rPID|1||1^^^H\rOBR|1||O1|X^Y^LN\rOBX|1|NM|X^Y^LN||high\r"))
        assert code == "AE" and text == "OBX-5: OBX-2 says NM but OBX-5 is not a number"
        # Noise between frames is skipped; the connection still serves the next message.
        client.socket.send(b"\r\n\x00\x00")
        code, control, _, _ = ack_of(client.send_message("MSH|^~\\&|A|B|||2024||ADT^A08|OK-1|P|2.5\rPID|1||77^^^H^MR||Roe^Ann\r"))
        assert (code, control) == ("AA", "OK-1")


def test_an_unknown_sender_is_refused():
    cfg = config(application="ONLY-THIS")
    n = Node("sqlite", extra_env={"MEDMESH_CONFIG": cfg, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0"})
    try:
        with MLLPClient(*n.mllp) as client:
            code, control, text, errs = ack_of(client.send_message(
                "MSH|^~\\&|OTHER|H|||2024||ADT^A01|U-1|P|2.5\rPID|1||5^^^H^MR||Poe^Al\r"))
        assert code == "AR" and control == "U-1"
        assert "unknown sender" in text
        assert fhir(n, "Patient?_summary=count")["total"] == 0
    finally:
        n.close()
        os.unlink(cfg)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=medmesh test CA", "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN=medmesh test {name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


@pytest.mark.parametrize("mutual", [False, True])
def test_mllp_over_tls_and_mutual_tls(mutual):
    import ssl

    d = tempfile.mkdtemp()
    make_pki(d)
    env = {"MEDMESH_CONFIG": config(), "MEDMESH_MLLP_LISTEN": "127.0.0.1:0",
           "MEDMESH_MLLP_TLS_CERTIFICATE": os.path.join(d, "server.pem"),
           "MEDMESH_MLLP_TLS_PRIVATE_KEY": os.path.join(d, "server.key")}
    if mutual:
        env["MEDMESH_MLLP_TLS_CLIENT_CA"] = os.path.join(d, "ca.pem")
    n = Node("sqlite", extra_env=env)
    try:
        def client(with_cert):
            ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
            if with_cert:
                ctx.load_cert_chain(os.path.join(d, "client.pem"), os.path.join(d, "client.key"))
            c = MLLPClient(*n.mllp)
            c.socket = ctx.wrap_socket(c.socket, server_hostname="127.0.0.1")
            return c

        with client(with_cert=True) as c:
            code, control, _, _ = ack_of(c.send_message("MSH|^~\\&|A|B|||2024||ADT^A08|TLS-1|P|2.5\rPID|1||88^^^H^MR||Tls^Tess\r"))
        assert (code, control) == ("AA", "TLS-1")
        def answered(c, control):
            """Whether the node acknowledged the message on this connection."""
            try:
                reply = c.send_message(f"MSH|^~\\&|A|B|||2024||ADT^A08|{control}|P|2.5\rPID|1||89^^^H^MR\r")
            except (ssl.SSLError, OSError):
                return False
            finally:
                c.close()
            return b"MSA|" in reply

        if mutual:
            # Without a client certificate, no message is taken.
            try:
                c = client(with_cert=False)
            except (ssl.SSLError, OSError):
                c = None
            assert c is None or not answered(c, "TLS-2")
        else:
            assert answered(client(with_cert=False), "TLS-2")
        # In clear, a TLS listener takes nothing (it answers with a TLS alert, if anything).
        plain = MLLPClient(*n.mllp)
        plain.socket.settimeout(5)
        assert not answered(plain, "TLS-3")
    finally:
        n.close()


def test_a_downstream_that_is_down_loses_nothing_and_gets_messages_in_order():
    import asyncio
    import socket
    import threading
    import time

    import hl7.mllp

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cfg = config()
    with open(cfg, "a") as f:
        f.write(f'\n[[hl7_channel]]\nname = "lis"\ndestination = "127.0.0.1:{port}"\nmessage_types = ["ORU"]\n')
    n = Node("sqlite", extra_env={"MEDMESH_CONFIG": cfg, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0"})

    def counts():
        out = subprocess.run([BIN, "hl7", "counts", *n.args], capture_output=True, text=True, env=n.env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    received = []
    try:
        with MLLPClient(*n.mllp) as c:
            for i in range(1, 4):
                code = ack_of(c.send_message(
                    f"MSH|^~\\&|LAB|H|||2024||ORU^R01|OUT-{i}|P|2.5.1\rPID|1||77^^^H^MR\r"
                    f"OBR|1||ORD-OUT^LAB|2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||{100 + i}|mg/dL||||F\r"))[0]
                assert code == "AA"
            # An ADT is not for this channel.
            assert ack_of(c.send_message("MSH|^~\\&|ADT|H|||2024||ADT^A08|OUT-ADT|P|2.5\rPID|1||77^^^H^MR\r"))[0] == "AA"
        # The destination is down: everything waits in the queue, nothing is dropped.
        assert "lis\tpending\t3" in counts(), counts()

        async def handler(reader, writer):
            try:
                while not writer.is_closing():
                    message = await reader.readmessage()
                    received.append(str(message.segment("MSH")[10]))
                    writer.writemessage(message.create_ack())
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass

        loop = asyncio.new_event_loop()

        async def serve():
            return await hl7.mllp.start_hl7_server(handler, "127.0.0.1", port)

        server = loop.run_until_complete(serve())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        deadline = time.time() + 60
        while len(received) < 3:
            assert time.time() < deadline, f"delivered only {received}"
            time.sleep(0.05)
        assert received == ["OUT-1", "OUT-2", "OUT-3"]
        deadline = time.time() + 10
        while "lis\tdelivered\t3" not in counts():
            assert time.time() < deadline
            time.sleep(0.05)
        async def shut():
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    finally:
        n.close()
        os.unlink(cfg)


def test_an_oversized_frame_is_refused_and_the_connection_goes_on():
    cfg = config()
    n = Node("sqlite", extra_env={"MEDMESH_CONFIG": cfg, "MEDMESH_MLLP_LISTEN": "127.0.0.1:0",
                                  "MEDMESH_MLLP_MAX_MESSAGE_BYTES": "2048"})
    try:
        with MLLPClient(*n.mllp) as c:
            big = "MSH|^~\\&|A|B|||2024||ADT^A08|BIG-1|P|2.5\rPID|1||91^^^H^MR||" + "X" * 200_000 + "\r"
            code, _, text, _ = ack_of(c.send_message(big))
            assert code == "AR" and "larger than this node accepts" in text
            code, control, _, _ = ack_of(c.send_message("MSH|^~\\&|A|B|||2024||ADT^A08|SMALL-1|P|2.5\rPID|1||92^^^H^MR\r"))
            assert (code, control) == ("AA", "SMALL-1")
    finally:
        n.close()
        os.unlink(cfg)


def test_pharmacy_messages_join_the_medication_loop(engine_node):
    """RDE^O11 and RDS^O13 go on through the medication service: an order against a recorded
    allergy is kept (the hospital's prescriber ordered it) with the finding recorded as a
    preliminary DetectedIssue; dispensing all of it completes it; a discontinued order is
    not made active again (AE, kept as a dead letter)."""
    def msh(kind, control):
        return f"MSH|^~\\&|PHARM|HOSP|MEDMESH|NODE|20261201090000||{kind}|{control}|P|2.5.1\r"

    pid = "PID|1||RX-7^^^HOSP^MR||Moss^Kit||19700101|F\r"
    rxe = ("RXE||308182^amoxicillin 250 MG Oral Capsule^RXNORM|1||CAP^capsule||"
           "^1 capsule three times a day||N|21|CAP^capsule|0\r")
    with MLLPClient(*engine_node.mllp) as client:
        def send(msg):
            return ack_of(client.send_message(msg))

        # The patient, allergic to amoxicillin (AL1), then an order for it.
        assert send(msh("ADT^A04^ADT_A01", "RX-ADT") + pid + "AL1|1|DA|723^amoxicillin^RXNORM|SV|rash\r")[0] == "AA"
        code, _, text, _ = send(msh("RDE^O11^RDE_O11", "RX-1") + pid + "ORC|NW|PO-1^HOSP\r" + rxe)
        assert code == "AA", text
        orders = fhir(engine_node, "MedicationRequest?identifier=PO-1")["entry"]
        assert len(orders) == 1
        order = orders[0]["resource"]
        assert order["status"] == "active"
        patient = order["subject"]["reference"]
        issues = fhir(engine_node, f"DetectedIssue?patient={patient}")["entry"]
        assert len(issues) == 1
        issue = issues[0]["resource"]
        assert issue["status"] == "preliminary"
        assert issue["code"]["coding"][0]["code"] == "ALGY"
        assert issue["implicated"][0]["reference"] == f"MedicationRequest/{order['id']}"
        assert "allergy" in issue["detail"]
        assert "mitigation" not in issue
        # The pharmacy dispenses all 21: the order is completed.
        rxd = "RXD|1|308182^amoxicillin 250 MG Oral Capsule^RXNORM|20261202100000|21|CAP^capsule||RXN-1\r"
        code, _, text, _ = send(msh("RDS^O13^RDS_O13", "RX-2") + pid + "ORC|RE|PO-1^HOSP\r" + rxe + rxd)
        assert code == "AA", text
        assert fhir(engine_node, f"MedicationRequest/{order['id']}")["status"] == "completed"
        dispenses = fhir(engine_node, f"MedicationDispense?prescription=MedicationRequest/{order['id']}")
        assert len(dispenses["entry"]) == 1
        # A second order, discontinued: its reminders are withdrawn, and it stays stopped.
        assert send(msh("RDE^O11^RDE_O11", "RX-3") + pid + "ORC|NW|PO-2^HOSP\r" + rxe)[0] == "AA"
        assert send(msh("RDE^O11^RDE_O11", "RX-4") + pid + "ORC|DC|PO-2^HOSP\r" + rxe)[0] == "AA"
        second = fhir(engine_node, "MedicationRequest?identifier=PO-2")["entry"][0]["resource"]
        assert second["status"] == "stopped"
        code, _, text, _ = send(msh("RDE^O11^RDE_O11", "RX-5") + pid + "ORC|NW|PO-2^HOSP\r" + rxe)
        assert code == "AE"
        assert text == "refused by the record's rules: a stopped prescription cannot change any more"
        assert fhir(engine_node, f"MedicationRequest/{second['id']}")["status"] == "stopped"
        # The allergy finding was recorded once per order (the second too), not per message.
        assert len(fhir(engine_node, f"DetectedIssue?patient={patient}")["entry"]) == 2
