"""A SMART standalone launch driven by a real OAuth2 client library (Authlib): discovery,
authorization code with PKCE S256, the consent screen, token exchange, refresh, then FHIR
calls with the token through fhirclient. Also SMART Backend Services with private_key_jwt
signed with joserfc (Authlib's JOSE library). The browser's part (sign-in form, consent form) is plain HTTP, with the
cookies handled as a browser does."""

import subprocess
import time
import uuid
from urllib.parse import urljoin

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import ECKey
from conftest import BIN
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation as SmartObservation
from fhirclient.models.patient import Patient as SmartPatient

REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "a long enough passphrase"


def hidden(html, name):
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


class Browser:
    """Keeps cookies by hand: the session cookie is Secure, and Python's cookie jar will
    not send Secure cookies over plain http, while real browsers do for loopback."""

    def __init__(self, base):
        self.base = base
        self.cookies = {}

    def _send(self, method, url, **kw):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        r = requests.request(method, urljoin(self.base, url), headers=headers, allow_redirects=False, **kw)
        for c in r.raw.headers.getlist("Set-Cookie"):
            k, v = c.split(";", 1)[0].split("=", 1)
            if v:
                self.cookies[k] = v
            else:
                self.cookies.pop(k, None)
        return r

    def get(self, url):
        return self._send("GET", url)

    def post(self, url, data):
        return self._send("POST", url, data=data)

    def login(self, username):
        page = self.get("/login").text
        r = self.post("/login", {"username": username, "password": PASSWORD, "csrf": hidden(page, "csrf"), "next": "/"})
        assert r.status_code == 303, r.text


def admin(node, *args, stdin=None):
    out = subprocess.run([BIN, "admin", *args[:1], *node.args, *args[1:]], input=stdin, capture_output=True, text=True, env=node.env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def seed(node):
    auth = {"Authorization": f"Bearer {node.token}"}
    for p in ("p1", "p2"):
        requests.put(f"{node.url}/Patient/{p}", json={"resourceType": "Patient", "id": p, "gender": "female"}, headers=auth).raise_for_status()
        requests.put(f"{node.url}/Observation/o-{p}", json={"resourceType": "Observation", "id": f"o-{p}", "status": "final", "code": {"text": "glucose"}, "subject": {"reference": f"Patient/{p}"}}, headers=auth).raise_for_status()
    admin(node, "create-user", "--role", "patient", "--username", "pat", "--patient", "p1", stdin=PASSWORD + "\n")


def register(node, body):
    r = requests.post(f"{node.base}/oauth/register", json=body, headers={"Authorization": f"Bearer {node.token}"})
    assert r.status_code == 201, r.text
    return r.json()


def test_standalone_launch_with_authlib_then_fhirclient(node):
    seed(node)
    client_id = register(node, {"client_name": "Authlib app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})["client_id"]
    conf = requests.get(f"{node.url}/.well-known/smart-configuration").json()
    assert "S256" in conf["code_challenge_methods_supported"]

    scope = "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs"
    oauth = OAuth2Session(client_id, scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(64)
    url, state = oauth.create_authorization_url(conf["authorization_endpoint"], code_verifier=verifier, aud=node.url, nonce=generate_token(16))

    browser = Browser(node.base)
    r = browser.get(url)
    assert r.status_code == 303 and r.headers["Location"].startswith("/login"), "not signed in: to the login page"
    browser.login("pat")
    consent = browser.get(url)
    assert consent.status_code == 200 and "asks for access" in consent.text
    form = {"csrf": hidden(consent.text, "csrf"), "request": hidden(consent.text, "request"), "decision": "allow", "scope": scope.split()}
    r = browser.post("/oauth/authorize", form)
    assert r.status_code == 303, r.text
    callback = r.headers["Location"]
    assert callback.startswith(REDIRECT)

    token = oauth.fetch_token(conf["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state)
    assert token["patient"] == "p1"
    assert token["fhirUser"] == "Patient/p1"
    assert "id_token" in token and "refresh_token" in token

    # The token with fhirclient: own record yes, another patient's never.
    smart = smart_client.FHIRClient(settings={"app_id": client_id, "api_base": node.url})
    smart.server.session.headers["Authorization"] = f"Bearer {token['access_token']}"
    assert SmartPatient.read("p1", smart.server).gender == "female"
    with pytest.raises(Exception):
        SmartPatient.read("p2", smart.server)
    found = SmartObservation.where(struct={}).perform_resources(smart.server)
    assert [o.id for o in found] == ["o-p1"]

    # Authlib refreshes; the rotated token works, the old one is dead.
    old_refresh = token["refresh_token"]
    new = oauth.refresh_token(conf["token_endpoint"], refresh_token=old_refresh)
    assert new["refresh_token"] != old_refresh
    r = requests.get(f"{node.url}/Patient/p1", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert r.status_code == 200
    reuse = requests.post(conf["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": old_refresh, "client_id": client_id})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"


def test_backend_services_with_authlib_private_key_jwt(node):
    seed(node)
    key = ECKey.generate_key("P-384")
    public = key.as_dict(private=False)
    public["kid"] = "backend-key-1"
    public["alg"] = "ES384"
    client_id = register(node, {"client_name": "Backend", "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [public]}, "scope": "system/Observation.rs"})["client_id"]
    conf = requests.get(f"{node.url}/.well-known/smart-configuration").json()
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES384", "kid": "backend-key-1", "typ": "JWT"},
                           {"iss": client_id, "sub": client_id, "aud": conf["token_endpoint"], "exp": now + 240, "jti": str(uuid.uuid4())}, key,
                           algorithms=["ES384"])
    r = requests.post(conf["token_endpoint"], data={"grant_type": "client_credentials", "scope": "system/Observation.rs",
                                                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion})
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    bundle = requests.get(f"{node.url}/Observation", headers={"Authorization": f"Bearer {access}"}).json()
    assert bundle["total"] == 2
