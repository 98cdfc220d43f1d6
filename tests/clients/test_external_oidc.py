"""Sign-in through a real OpenID Provider (node's oidc-provider, on loopback), the whole
browser-style code flow driven over HTTP, and the provider's JWT access tokens accepted on
the FHIR API with issuer and audience checks."""

import os
import re
import socket
import subprocess
import tempfile
from html import unescape
from urllib.parse import urljoin

import pytest
import requests
from conftest import Node
from test_smart_flow import Browser

HERE = os.path.dirname(os.path.abspath(__file__))
OIDC_DIR = os.path.join(HERE, "..", "oidc")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgres"])
def federated(request):
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/external/hospital/callback"
    provider = subprocess.Popen(["node", "provider.js"], cwd=OIDC_DIR, env={**os.environ, "REDIRECT_URI": callback},
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = provider.stdout.readline()
    assert line.startswith("issuer "), f"the OpenID provider did not start: {line!r}"
    issuer = line.split(" ", 1)[1].strip()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'''
[[oidc]]
id = "hospital"
name = "St Elsewhere"
issuer = "{issuer}"
client_id = "medmesh"
client_secret = "medmesh-secret"
role_claim = "roles"
role_map = {{ clinician = "practitioner", "patient-role" = "patient" }}
fhir_user_claim = "fhirUser"
api_audience = "medmesh-api"
api_scope_ceiling = "system/Observation.rs"
''')
    cfg.close()
    node = Node(request.param, listen=f"127.0.0.1:{port}", extra_args=["--config", cfg.name])
    node.issuer = issuer
    yield node
    node.close()
    provider.kill()
    provider.wait()
    os.unlink(cfg.name)


def provider_sign_in(start_url, login):
    """Plays the user at the provider: fills its login and consent forms until it redirects
    away from the provider. Returns that redirect (our callback)."""
    op = requests.Session()
    url = start_url
    origin = re.match(r"https?://[^/]+", start_url).group(0)
    for _ in range(12):
        r = op.get(url, allow_redirects=False)
        while r.status_code in (302, 303):
            nxt = urljoin(url, r.headers["Location"])
            if not nxt.startswith(origin):
                return nxt
            url = nxt
            r = op.get(url, allow_redirects=False)
        form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        assert form, r.text[:500]
        data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', r.text))
        if data.get("prompt") == "login":
            data.update({"login": login, "password": "any"})
        r = op.post(unescape(form.group(1)), data=data, allow_redirects=False)
        assert r.status_code in (302, 303), r.text[:500]
        url = urljoin(url, r.headers["Location"])
        if not url.startswith(origin):
            return url
    raise AssertionError("the provider never redirected back")


def sign_in(node, login):
    browser = Browser(node.base)
    page = browser.get("/login").text
    assert "Sign in with St Elsewhere" in page
    r = browser.get("/login/external/hospital?next=/api/account")
    assert r.status_code == 303
    assert r.headers["Location"].startswith(node.issuer)
    callback = provider_sign_in(r.headers["Location"], login)
    assert callback.startswith(f"{node.base}/login/external/hospital/callback?")
    r = browser.get(callback)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "/api/account"
    return browser


def test_sign_in_with_the_provider_maps_roles_and_links_records(federated):
    node = federated
    auth = {"Authorization": f"Bearer {node.token}"}
    requests.put(f"{node.url}/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=auth).raise_for_status()

    doctor = sign_in(node, "drhouse")
    me = doctor.get("/api/account").json()
    assert me["role"] == "practitioner"
    assert me["practitioner"] == "dr1"
    assert me["username"] == "drhouse@hospital"

    patient = sign_in(node, "alice")
    me = patient.get("/api/account").json()
    assert me["role"] == "patient" and me["patient"] == "p1"

    # Signing in again finds the same account.
    again = sign_in(node, "drhouse").get("/api/account").json()
    assert again["id"] == doctor.get("/api/account").json()["id"]

    # A callback whose state does not match this browser's sign-in is refused.
    b = Browser(node.base)
    r = b.get("/login/external/hospital")
    forged = b.get("/login/external/hospital/callback?code=x&state=not-the-state")
    assert forged.status_code == 403


def test_provider_access_tokens_work_on_the_api(federated):
    node = federated
    auth = {"Authorization": f"Bearer {node.token}"}
    requests.put(f"{node.url}/Observation/o1", json={"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "k"}}, headers=auth).raise_for_status()
    conf = requests.get(f"{node.issuer}/.well-known/openid-configuration").json()
    r = requests.post(conf["token_endpoint"], auth=("lab-robot", "lab-secret"),
                      data={"grant_type": "client_credentials", "scope": "system/Observation.rs", "resource": "urn:medmesh"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 2, "a JWT access token"
    ok = requests.get(f"{node.url}/Observation/o1", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    # Scopes beyond the configured ceiling and the token's own are refused.
    assert requests.get(f"{node.url}/Patient", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    # A tampered token is refused.
    head, body, sig = token.split(".")
    bad = f"{head}.{body}.{sig[:-4]}AAAA"
    assert requests.get(f"{node.url}/Observation/o1", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
