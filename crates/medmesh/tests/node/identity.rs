//! Accounts, login with TOTP, sessions and CSRF, throttling, and the SMART authorization
//! server (code flow with PKCE, refresh rotation, backend services, introspection,
//! revocation), each attack with its own assertion. HTTP is driven by hand, cookies included,
//! so every redirect and header is checked.

use std::collections::HashMap;

use medmesh_auth::credentials::Totp;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::Node;
use crate::on_both_databases;

const PASSWORD: &str = "a long enough passphrase";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(h: &HeaderMap) -> HashMap<String, String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let first = v.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Creates an account with the CLI. Returns (id, TOTP URI if any).
pub(crate) fn create_user(
    node: &Node,
    role: &str,
    username: &str,
    link: &[&str],
) -> (String, Option<String>) {
    let mut args = vec![
        "admin",
        "create-user",
        "--role",
        role,
        "--username",
        username,
    ];
    args.extend_from_slice(link);
    let out = node.cli_stdin(&args, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "create-user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_string(),
        lines.next().map(str::to_string),
    )
}

fn code_for(uri: &str, offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset;
    Totp::from_enrolment_uri(uri).unwrap().code_at(now as u64)
}

/// A browser: the login CSRF cookie and the session cookie.
pub(crate) struct Browser {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    pub(crate) fn new(node: &Node) -> Self {
        Self {
            http: no_redirects(),
            base: node.base.clone(),
            cookies: HashMap::new(),
        }
    }
    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }
    async fn finish(&mut self, r: reqwest::Response) -> (StatusCode, HeaderMap, String) {
        let s = r.status();
        let h = r.headers().clone();
        for (k, v) in set_cookies(&h) {
            if v.is_empty() {
                self.cookies.remove(&k);
            } else {
                self.cookies.insert(k, v);
            }
        }
        (s, h, r.text().await.unwrap())
    }
    /// Password step; returns the status and page.
    async fn password(&mut self, username: &str, password: &str) -> (StatusCode, String) {
        let (_, _, page) = self.get("/login").await;
        let csrf = hidden(&page, "csrf");
        let (s, _, page) = self
            .post(
                "/login",
                &[
                    ("username", username),
                    ("password", password),
                    ("csrf", &csrf),
                    ("next", "/account/sessions"),
                ],
            )
            .await;
        (s, page)
    }
    /// Full login; `totp` is the enrolment URI for accounts with a second factor.
    pub(crate) async fn login(&mut self, username: &str, totp: Option<&str>) -> String {
        let (s, page) = self.password(username, PASSWORD).await;
        if let Some(uri) = totp {
            assert_eq!(s, StatusCode::OK, "{page}");
            let csrf = hidden(&page, "csrf");
            let (s, _, page) = self
                .post(
                    "/login/code",
                    &[
                        ("code", &code_for(uri, 0)),
                        ("csrf", &csrf),
                        ("next", "/account/sessions"),
                    ],
                )
                .await;
            assert!(
                s == StatusCode::OK || s == StatusCode::SEE_OTHER,
                "{s}: {page}"
            );
            page
        } else {
            assert_eq!(s, StatusCode::SEE_OTHER, "{page}");
            page
        }
    }
    async fn account(&mut self) -> Value {
        let (s, _, body) = self.get("/api/account").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

async fn seed_people(node: &Node) {
    node.put(
        "Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1"}),
    )
    .await;
    node.put(
        "Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2"}),
    )
    .await;
    node.put(
        "Practitioner/dr1",
        &json!({"resourceType": "Practitioner", "id": "dr1"}),
    )
    .await;
    node.put("Observation/o1", &json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}})).await;
    node.put("Observation/o2", &json!({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}})).await;
    // dr1 cares for both (the consent issue's care relationship; see consent.rs).
    for p in ["p1", "p2"] {
        node.put(
            &format!("CareTeam/ct-{p}"),
            &json!({"resourceType": "CareTeam", "id": format!("ct-{p}"), "status": "active",
                    "subject": {"reference": format!("Patient/{p}")},
                    "participant": [{"member": {"reference": "Practitioner/dr1"}}]}),
        )
        .await;
    }
}

async fn login_needs_password_and_a_fresh_totp_code(node: Node) {
    seed_people(&node).await;
    let (_, uri) = create_user(
        &node,
        "practitioner",
        "drwho",
        &["--practitioner", "dr1", "--verification", "verified"],
    );
    let uri = uri.expect("practitioners must get a TOTP enrolment URI");
    assert!(uri.starts_with("otpauth://totp/"));
    // The password alone does not sign in.
    let mut b = Browser::new(&node);
    let (s, page) = b.password("drwho", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("<svg"),
        "the first login shows the enrolment QR code"
    );
    assert_eq!(
        b.get("/api/account").await.0,
        StatusCode::UNAUTHORIZED,
        "pending session is not signed in (a JSON route answers 401, not a redirect)"
    );
    // The code completes it; the first time shows recovery codes.
    let csrf = hidden(&page, "csrf");
    let code = code_for(&uri, 0);
    let (s, _, page) = b
        .post(
            "/login/code",
            &[
                ("code", &code),
                ("csrf", &csrf),
                ("next", "/account/sessions"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("recovery-codes"));
    let recovery: Vec<String> = page
        .split("<code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(b.account().await["role"], "practitioner");
    let cookie = b.cookies["medmesh_session"].clone();
    assert!(set_cookie_flags_ok(&node).await);

    // The same code again, in its window, is refused (replay).
    let mut b2 = Browser::new(&node);
    let (_, page) = b2.password("drwho", PASSWORD).await;
    let csrf = hidden(&page, "csrf");
    let (s, _, _) = b2
        .post(
            "/login/code",
            &[("code", &code), ("csrf", &csrf), ("next", "/")],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a TOTP code replayed inside its window"
    );
    // A recovery code works, once.
    let (s, _, _) = b2
        .post(
            "/login/code",
            &[
                ("code", &recovery[0].to_uppercase()),
                ("csrf", &csrf),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let mut b3 = Browser::new(&node);
    let (_, page) = b3.password("drwho", PASSWORD).await;
    let csrf = hidden(&page, "csrf");
    let (s, _, _) = b3
        .post(
            "/login/code",
            &[("code", &recovery[0]), ("csrf", &csrf), ("next", "/")],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a used recovery code");

    // Sessions: the user sees both, ends the other one, and that cookie stops working.
    let (s, _, page) = b2.get("/account/sessions").await;
    assert_eq!(s, StatusCode::OK);
    let handle = hidden(&page, "handle");
    let csrf = hidden(&page, "csrf");
    let (s, _, _) = b2
        .post(
            "/account/sessions/end",
            &[("csrf", &csrf), ("handle", &handle)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let mut old = Browser::new(&node);
    old.cookies.insert("medmesh_session".into(), cookie);
    assert_eq!(
        old.get("/api/account").await.0,
        StatusCode::UNAUTHORIZED,
        "an ended session (a JSON route answers 401, not a redirect)"
    );
    // Logout revokes.
    let (s, _, _) = b2.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(s, StatusCode::OK);
    let mut gone = Browser::new(&node);
    gone.cookies.insert(
        "medmesh_session".into(),
        b2.cookies
            .get("medmesh_session")
            .cloned()
            .unwrap_or_default(),
    );
    assert_ne!(gone.get("/api/account").await.0, StatusCode::OK);
}

async fn set_cookie_flags_ok(node: &Node) -> bool {
    let r = no_redirects()
        .get(format!("{}/login", node.base))
        .send()
        .await
        .unwrap();
    r.headers().get_all(SET_COOKIE).iter().all(|v| {
        let v = v.to_str().unwrap();
        v.contains("HttpOnly") && v.contains("Secure") && v.contains("SameSite=Lax")
    })
}

async fn csrf_tokens_are_required(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let mut b = Browser::new(&node);
    // The login form without its CSRF cookie pairing.
    let (s, _, _) = b
        .post(
            "/login",
            &[
                ("username", "pat"),
                ("password", PASSWORD),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "login CSRF token wrong");
    b.login("pat", None).await;
    let (s, _, _) = b.post("/logout", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "CSRF token missing");
    let (s, _, _) = b.post("/logout", &[("csrf", "wrong")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "CSRF token wrong");
    assert_eq!(
        b.get("/api/account").await.0,
        StatusCode::OK,
        "still signed in"
    );
    // The login is in the patient's audit log, under their account id.
    let (s, _, log) = node.get_raw("/api/patients/p1/audit").await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let account: Value = serde_json::from_str(&b.get("/api/account").await.2).unwrap();
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"]["action"] == "login"
                && e["entry"]["actor"] == account["id"]
                && e["entry"]["outcome"] == "Success"),
        "{log}"
    );
}

async fn brute_force_hits_the_throttle(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let mut b = Browser::new(&node);
    for _ in 0..5 {
        assert_eq!(
            b.password("pat", "wrong password here").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Five failures arm the throttle; the first wait is one second, shorter than a slow
    // machine may take to send the next request. Ten more failures, each sent after its
    // wait, would take seventeen minutes: the count moves on in the store instead, which
    // leaves a wait of minutes (the curve itself is unit-tested in medmesh-auth).
    assert_eq!(
        node.sql_i64("SELECT failures FROM login_throttle WHERE key = 'user:pat'")
            .await,
        5
    );
    node.raw_sql("UPDATE login_throttle SET failures = 15 WHERE key = 'user:pat'")
        .await;
    let (s, page) = b.password("pat", PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits: {page}"
    );
    assert!(page.contains("try again in"));
    // Every spelling that reaches the account shares its budget: white space around the
    // name once bought a fresh one (and logged in while the account was locked).
    for spelling in [" pat", "pat ", "\tpat", " pat\n"] {
        let (s, page) = b.password(spelling, PASSWORD).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{spelling:?}: {page}");
    }
    // The 429 says when to come back.
    let (_, _, page) = b.get("/login").await;
    let csrf = hidden(&page, "csrf");
    let (s, h, _) = b
        .post(
            "/login",
            &[("username", "pat"), ("password", PASSWORD), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // An unknown user name gets the same answer as a wrong password.
    assert_eq!(
        b.password("nobody", "wrong password here").await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Registers a client through the admin API.
async fn register(node: &Node, body: Value) -> Value {
    let r = no_redirects()
        .post(format!("{}/oauth/register", node.base))
        .bearer_auth(&node.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn pkce() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Runs the browser half of the code flow: authorize, consent (keeping `keep` scopes), and
/// returns the redirect's query.
async fn authorize(
    b: &mut Browser,
    node: &Node,
    client_id: &str,
    scope: &str,
    challenge: &str,
    keep: &[&str],
    patient: Option<&str>,
) -> HashMap<String, String> {
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", node.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st4te")
        .append_pair("aud", &format!("{}/fhir", node.base))
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    let (s, h, page) = b.get(u.as_str()).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("asks for access"), "{page}");
    // The consent screen carries the node's page headers: no script but its own, no frame.
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    let csrf = hidden(&page, "csrf");
    let request = hidden(&page, "request");
    let mut form: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("request", &request),
        ("decision", "allow"),
    ];
    for k in keep {
        form.push(("scope", k));
    }
    if let Some(p) = patient {
        form.push(("patient", p));
    }
    let (s, h, body) = b.post("/oauth/authorize", &form).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let loc = h[LOCATION].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query_of(loc)
}

/// The whole code flow for a public client: PKCE, consent keeping `keep`, token exchange.
async fn code_flow(
    b: &mut Browser,
    node: &Node,
    client_id: &str,
    scope: &str,
    keep: &[&str],
) -> Value {
    let (verifier, challenge) = pkce();
    let q = authorize(b, node, client_id, scope, &challenge, keep, None).await;
    let (s, t) = token_request(
        node,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t
}

async fn token_request(node: &Node, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", node.base))
        .form(form)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn fhir_get(node: &Node, token: &str, path: &str) -> StatusCode {
    reqwest::Client::new()
        .get(node.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn smart_code_flow_with_pkce(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let client = register(&node, json!({"client_name": "Health App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})).await;
    let id = client["client_id"].as_str().unwrap();
    let mut b = Browser::new(&node);
    b.login("pat", None).await;

    // A redirect URI that is not an exact match gets an error page, never a redirect.
    let (s, h, _) = b.get(&format!("{}/oauth/authorize?response_type=code&client_id={id}&redirect_uri={REDIRECT}/x&scope=openid&code_challenge=x&code_challenge_method=S256", node.base)).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a redirect URI that does not match exactly"
    );
    assert!(h.get(LOCATION).is_none());
    // PKCE is mandatory, S256 only.
    let (s, h, _) = b.get(&format!("{}/oauth/authorize?response_type=code&client_id={id}&redirect_uri={REDIRECT}&scope=openid&code_challenge=x&code_challenge_method=plain", node.base)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        query_of(h[LOCATION].to_str().unwrap())["error"],
        "invalid_request"
    );

    // The user unticks Observation: the token does not carry it.
    let scope =
        "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs";
    let (verifier, challenge) = pkce();
    let q = authorize(
        &mut b,
        &node,
        id,
        scope,
        &challenge,
        &[
            "openid",
            "fhirUser",
            "launch/patient",
            "offline_access",
            "patient/Patient.rs",
        ],
        None,
    )
    .await;
    assert_eq!(q["state"], "st4te");
    // A wrong verifier fails (and burns the code).
    let (s, body) = token_request(
        &node,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", id),
            ("code_verifier", &format!("{verifier}x")),
        ],
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "a PKCE verifier mismatch"
    );

    let (verifier, challenge) = pkce();
    let q = authorize(
        &mut b,
        &node,
        id,
        scope,
        &challenge,
        &[
            "openid",
            "fhirUser",
            "launch/patient",
            "offline_access",
            "patient/Patient.rs",
        ],
        None,
    )
    .await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", id),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, t) = token_request(&node, &exchange).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["patient"], "p1");
    assert_eq!(t["fhirUser"], "Patient/p1");
    assert!(t["id_token"].is_string() && t["refresh_token"].is_string());
    assert!(
        !t["scope"].as_str().unwrap().contains("Observation"),
        "an unticked scope was granted: {t}"
    );
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&node, access, "Patient/p1").await, StatusCode::OK);
    assert_eq!(
        fhir_get(&node, access, "Patient/p2").await,
        StatusCode::NOT_FOUND,
        "another patient"
    );
    assert_eq!(
        fhir_get(&node, access, "Observation/o1").await,
        StatusCode::FORBIDDEN,
        "unticked scope"
    );

    // The id_token verifies against the JWKS, for this client.
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let idt = medmesh_auth::token::verify_with_jwks(
        t["id_token"].as_str().unwrap(),
        &jwks,
        Some(&node.base),
        id,
        now,
        medmesh_auth::token::TokenTimes::default(),
    )
    .unwrap();
    assert_eq!(idt["fhirUser"], "Patient/p1");

    // Replaying the code fails, and revokes what it issued.
    let (s, body) = token_request(&node, &exchange).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "a replayed authorization code"
    );
    let (s, _) = token_request(
        &node,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", id),
        ],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "the replayed code's refresh token is revoked"
    );

    // Denying consent redirects with access_denied.
    let (_, challenge) = pkce();
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", node.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "patient/Patient.rs")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let (_, _, page) = b.get(u.as_str()).await;
    let (csrf, request) = (hidden(&page, "csrf"), hidden(&page, "request"));
    let (s, h, _) = b
        .post(
            "/oauth/authorize",
            &[("csrf", &csrf), ("request", &request), ("decision", "deny")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        query_of(h[LOCATION].to_str().unwrap())["error"],
        "access_denied"
    );
    // Consent without a CSRF token is refused.
    let (s, _, _) = b
        .post(
            "/oauth/authorize",
            &[
                ("request", &request),
                ("decision", "allow"),
                ("scope", "patient/Patient.rs"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let client = register(
        &node,
        json!({"client_name": "App", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let id = client["client_id"].as_str().unwrap();
    let mut b = Browser::new(&node);
    b.login("pat", None).await;
    let t = code_flow(
        &mut b,
        &node,
        id,
        "offline_access patient/Patient.rs patient/Observation.rs",
        &[
            "offline_access",
            "patient/Patient.rs",
            "patient/Observation.rs",
        ],
    )
    .await;
    let r1 = t["refresh_token"].as_str().unwrap().to_string();

    // Escalation at refresh: asking for more than was granted.
    let (s, body) = token_request(
        &node,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", id),
            ("scope", "patient/Patient.rs patient/Condition.rs"),
        ],
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "scope escalation at refresh"
    );

    // r1 was consumed by that attempt only if it passed scope checks; take a fresh pair.
    let t = code_flow(
        &mut b,
        &node,
        id,
        "offline_access patient/Patient.rs patient/Observation.rs",
        &[
            "offline_access",
            "patient/Patient.rs",
            "patient/Observation.rs",
        ],
    )
    .await;
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    // Narrowing is allowed, and rotates.
    let (s, t2) = token_request(
        &node,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", id),
            ("scope", "offline_access patient/Patient.rs"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    assert_eq!(t2["scope"], "offline_access patient/Patient.rs");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    // Reusing r1: refused, and r2 dies with it.
    let (s, body) = token_request(
        &node,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", id),
        ],
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "refresh token reuse"
    );
    let (s, _) = token_request(
        &node,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", id),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the family is revoked");
    // Without offline_access or online_access there is no refresh token.
    let t = code_flow(
        &mut b,
        &node,
        id,
        "patient/Patient.rs",
        &["patient/Patient.rs"],
    )
    .await;
    assert!(t.get("refresh_token").is_none(), "{t}");
}

fn assertion(key: &medmesh_auth::TokenSigningKey, client_id: &str, aud: &str, jti: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    key.sign_claims(&json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240, "iat": now, "jti": jti})).unwrap()
}

async fn backend_services_use_private_key_jwt(node: Node) {
    seed_people(&node).await;
    let key = medmesh_auth::TokenSigningKey::from_secret(
        medmesh_auth::KeyId("backend-1".into()),
        [42; 32],
    );
    let client = register(&node, json!({"client_name": "Lab system", "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.verifying_key().to_jwk()]}, "scope": "system/Observation.rs system/Patient.rs"})).await;
    let id = client["client_id"].as_str().unwrap();
    let token_url = format!("{}/oauth/token", node.base);
    let node = &node;
    let grant = |a: String, scope: &'static str| async move {
        token_request(
            node,
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &a),
            ],
        )
        .await
    };
    let a = assertion(&key, id, &token_url, "j1");
    let (s, t) = grant(a.clone(), "system/Observation.rs").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        fhir_get(node, &access, "Observation/o2").await,
        StatusCode::OK
    );
    assert_eq!(
        fhir_get(node, &access, "Practitioner/dr1").await,
        StatusCode::FORBIDDEN
    );
    let (s, _) = grant(a, "system/Observation.rs").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a replayed client assertion");
    let (s, _) = grant(
        assertion(&key, id, "https://elsewhere/token", "j2"),
        "system/Observation.rs",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an assertion for another audience"
    );
    let stranger = medmesh_auth::TokenSigningKey::from_secret(
        medmesh_auth::KeyId("backend-1".into()),
        [7; 32],
    );
    let (s, _) = grant(
        assertion(&stranger, id, &token_url, "j3"),
        "system/Observation.rs",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an assertion signed by another key"
    );
    let (s, body) = grant(assertion(&key, id, &token_url, "j4"), "system/Condition.rs").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "beyond the registered scope"
    );
}

async fn introspection_and_revocation(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let app = register(&node, json!({"client_name": "App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"})).await;
    let (id, secret) = (
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    let mut b = Browser::new(&node);
    b.login("pat", None).await;
    let (verifier, challenge) = pkce();
    let q = authorize(
        &mut b,
        &node,
        id,
        "online_access patient/Patient.rs",
        &challenge,
        &["online_access", "patient/Patient.rs"],
        None,
    )
    .await;
    let http = reqwest::Client::new();
    let t: Value = http
        .post(format!("{}/oauth/token", node.base))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = t["access_token"].as_str().unwrap();
    assert!(
        t["refresh_token"].is_string(),
        "online_access gives a refresh token: {t}"
    );
    let introspect = |token: String| {
        let http = http.clone();
        let url = format!("{}/oauth/introspect", node.base);
        async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let i = introspect(access.to_string()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["patient"], "p1");
    assert_eq!(
        introspect(t["refresh_token"].as_str().unwrap().to_string()).await["active"],
        true
    );
    // A wrong client secret cannot introspect.
    let r = http
        .post(format!("{}/oauth/introspect", node.base))
        .basic_auth(id, Some("nope"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Revoke the access token: the API refuses it at once, introspection says inactive.
    let r = http
        .post(format!("{}/oauth/revoke", node.base))
        .basic_auth(id, Some(secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        fhir_get(&node, access, "Patient/p1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(introspect(access.to_string()).await["active"], false);
    let r = http
        .post(format!("{}/oauth/revoke", node.base))
        .basic_auth(id, Some(secret))
        .form(&[("token", t["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        introspect(t["refresh_token"].as_str().unwrap().to_string()).await["active"],
        false
    );
}

async fn forged_tokens_are_refused(node: Node) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = node.token.clone();
    assert_eq!(fhir_get(&node, &good, "Patient").await, StatusCode::OK);
    let header: Value =
        serde_json::from_slice(&b64.decode(good.split('.').next().unwrap()).unwrap()).unwrap();
    let payload = good.split('.').nth(1).unwrap().to_string();
    // alg: none.
    let none = format!(
        "{}.{payload}.",
        b64.encode(json!({"alg": "none", "kid": header["kid"]}).to_string())
    );
    assert_eq!(
        fhir_get(&node, &none, "Patient").await,
        StatusCode::UNAUTHORIZED,
        "alg none"
    );
    // HS256 signed with the public key as the HMAC secret (algorithm confusion).
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = b64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64.decode(&payload).unwrap()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = header["kid"].as_str().map(str::to_string);
    let hs = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        fhir_get(&node, &hs, "Patient").await,
        StatusCode::UNAUTHORIZED,
        "HS256 with the public key"
    );
    // A tampered payload.
    let mut c = claims.clone();
    c["scope"] = json!("system/*.* patient/*.*");
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(c.to_string()), parts[2]);
    assert_eq!(
        fhir_get(&node, &tampered, "Patient").await,
        StatusCode::UNAUTHORIZED,
        "tampered claims"
    );
    // A key the node never published (unknown kid), and a known kid with another key.
    for kid in ["not-a-key", header["kid"].as_str().unwrap()] {
        let k =
            medmesh_auth::TokenSigningKey::from_secret(medmesh_auth::KeyId(kid.into()), [9; 32]);
        assert_eq!(
            fhir_get(&node, &k.sign_claims(&claims).unwrap(), "Patient").await,
            StatusCode::UNAUTHORIZED,
            "kid {kid}"
        );
    }
    // A token from another issuer, signed by the node's own key.
    let out = node
        .command_with_env("MEDMESH_ISSUER", "https://other.example")
        .args(["admin", "token"])
        .args(node.store_args())
        .args(["--scope", "system/*.*"])
        .output()
        .unwrap();
    let other = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        fhir_get(&node, other.trim(), "Patient").await,
        StatusCode::UNAUTHORIZED,
        "wrong issuer"
    );
    // Expired and not-yet-valid tokens, a wrong audience: checked in medmesh-auth's unit
    // tests with a fixed clock (the binary's clock is the system's).
}

async fn discovery_documents(node: Node) {
    let sc: Value = reqwest::get(format!("{}/.well-known/smart-configuration", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sc["issuer"], node.base);
    assert_eq!(sc["code_challenge_methods_supported"], json!(["S256"]));
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "registration_endpoint",
    ] {
        assert!(sc[k].as_str().unwrap().starts_with(&node.base), "{k}");
    }
    let fhir_sc: Value = reqwest::get(node.url(".well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fhir_sc, sc);
    let oidc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["issuer"], node.base);
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    // Client registration is closed to anonymous callers by default.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", node.base))
        .json(&json!({"redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

async fn roles_cap_scopes_and_invitations_create_accounts(node: Node) {
    seed_people(&node).await;
    node.put(
        "Practitioner/dr2",
        &json!({"resourceType": "Practitioner", "id": "dr2"}),
    )
    .await;
    let (_, admin_totp) = create_user(&node, "org-admin", "orgadmin", &["--organization", "org1"]);
    // An org admin's token never reaches clinical data, whatever it asks for.
    let out = node.cli(&[
        "admin",
        "token",
        "--user",
        "orgadmin",
        "--scope",
        "user/*.cruds",
    ]);
    let t = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        fhir_get(&node, t.trim(), "Observation/o1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fhir_get(&node, t.trim(), "Practitioner/dr1").await,
        StatusCode::OK
    );
    // A suspended practitioner: clinical scopes are cut away entirely.
    create_user(
        &node,
        "practitioner",
        "drsus",
        &["--practitioner", "dr1", "--verification", "suspended"],
    );
    let out = node.cli(&[
        "admin",
        "token",
        "--user",
        "drsus",
        "--scope",
        "user/Observation.rs",
    ]);
    assert!(
        !out.status.success(),
        "no clinical scope for a suspended practitioner"
    );

    // The org admin invites a practitioner, who registers with the code.
    let mut b = Browser::new(&node);
    b.login("orgadmin", admin_totp.as_deref()).await;
    let csrf = b.account().await["csrf"].as_str().unwrap().to_string();
    let r = b
        .http
        .post(format!("{}/api/invitations", node.base))
        .header("cookie", b.cookie_header())
        .header("x-csrf-token", &csrf)
        .json(&json!({"role": "practitioner", "practitioner": "dr2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let code = r.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = b
        .http
        .post(format!("{}/api/invitations", node.base))
        .header("cookie", b.cookie_header())
        .json(&json!({"role": "practitioner", "practitioner": "dr2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "an API call without the CSRF header"
    );
    let mut newcomer = Browser::new(&node);
    let (_, _, page) = newcomer.get("/register").await;
    let csrf = hidden(&page, "csrf");
    let (s, _, page) = newcomer
        .post(
            "/register",
            &[
                ("invitation", &code),
                ("username", "drnew"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{page}");
    let (s, _, _) = newcomer
        .post(
            "/register",
            &[
                ("invitation", &code),
                ("username", "drnew2"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an invitation is used once");
    // Self-registration is off by default.
    let (s, _, _) = newcomer
        .post(
            "/register",
            &[
                ("username", "someone"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The new practitioner must enrol TOTP at first login.
    let (s, page) = newcomer.password("drnew", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<svg"), "enrolment at first login");
}

async fn a_practitioner_picks_the_launch_patient(node: Node) {
    seed_people(&node).await;
    let (_, totp) = create_user(
        &node,
        "practitioner",
        "drpick",
        &["--practitioner", "dr1", "--verification", "verified"],
    );
    let client = register(
        &node,
        json!({"client_name": "Clinic app", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let id = client["client_id"].as_str().unwrap();
    let mut b = Browser::new(&node);
    b.login("drpick", totp.as_deref()).await;
    let exchange = |code: String, verifier: String| {
        let node = &node;
        async move {
            token_request(
                node,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("client_id", id),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    // Standalone launch: the practitioner picks p2 on the consent screen.
    let (verifier, challenge) = pkce();
    let q = authorize(
        &mut b,
        &node,
        id,
        "launch/patient patient/*.rs",
        &challenge,
        &["launch/patient", "patient/*.rs"],
        Some("p2"),
    )
    .await;
    let (s, t) = exchange(q["code"].clone(), verifier).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["patient"], "p2");
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        fhir_get(&node, access, "Observation/o2").await,
        StatusCode::OK
    );
    assert_eq!(
        fhir_get(&node, access, "Observation/o1").await,
        StatusCode::NOT_FOUND
    );
    // EHR launch: the portal makes a launch context for the open patient; the app passes it.
    let (s, l) = api_post(&mut b, "/api/launch", json!({"patient": "p1"})).await;
    assert_eq!(s, StatusCode::OK);
    let launch = l["launch"].as_str().unwrap().to_string();
    let (verifier, challenge) = pkce();
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", node.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "launch patient/*.rs")
        .append_pair("launch", &launch)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let (_, _, page) = b.get(u.as_str()).await;
    assert!(
        page.contains("value=\"p1\""),
        "the launch patient is preset"
    );
    let (csrf, request) = (hidden(&page, "csrf"), hidden(&page, "request"));
    let (_, h, _) = b
        .post(
            "/oauth/authorize",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("decision", "allow"),
                ("scope", "launch"),
                ("scope", "patient/*.rs"),
            ],
        )
        .await;
    let q = query_of(h[LOCATION].to_str().unwrap());
    let (_, t) = exchange(q["code"].clone(), verifier).await;
    assert_eq!(t["patient"], "p1", "{t}");
    // A forged launch value is ignored.
    u.query_pairs_mut().append_pair("launch", "forged");
    assert_eq!(b.get(u.as_str()).await.0, StatusCode::OK);

    // Without a patient, patient scopes cannot be granted.
    let (_, challenge) = pkce();
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", node.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "patient/*.rs")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let (_, _, page) = b.get(u.as_str()).await;
    let (csrf, request) = (hidden(&page, "csrf"), hidden(&page, "request"));
    let (s, h, _) = b
        .post(
            "/oauth/authorize",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("decision", "allow"),
                ("scope", "patient/*.rs"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        query_of(h[LOCATION].to_str().unwrap())["error"],
        "invalid_request"
    );
}

/// A JSON call with the session cookie and its CSRF token.
async fn api_post(b: &mut Browser, path: &str, body: Value) -> (StatusCode, Value) {
    api_send(b, reqwest::Method::POST, path, Some(body)).await
}

/// A JSON API call with the session cookie and its CSRF token.
async fn api_send(
    b: &mut Browser,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let csrf = b.account().await["csrf"].as_str().unwrap().to_string();
    let mut r = b
        .http
        .request(method, format!("{}{path}", b.base))
        .header("cookie", b.cookie_header())
        .header("x-csrf-token", csrf);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A patient's notification settings over the JSON API: the defaults, an address and
/// choices, a bad address refused, a webhook (its secret answered once, an address inside
/// the node's networks refused) that changing the choices keeps, and its removal.
async fn a_patient_sets_their_notifications(node: Node) {
    use reqwest::Method;
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let mut b = Browser::new(&node);
    b.login("pat", None).await;
    let path = "/api/account/notifications";
    let (s, shown) = api_send(&mut b, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(shown["choices"]["results"], json!(["inbox"]));
    assert_eq!(shown["choices"]["operations"], json!(["email"]));
    assert!(shown["email"].is_null() && shown["webhook"].is_null());

    let choose =
        json!({"email": "pat@example.org", "choices": {"results": ["inbox", "email", "webhook"]}});
    let (s, saved) = api_send(&mut b, Method::PUT, path, Some(choose.clone())).await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(saved["email"], "pat@example.org");
    assert_eq!(
        saved["choices"]["results"],
        json!(["inbox", "email", "webhook"])
    );
    let (s, _) = api_send(
        &mut b,
        Method::PUT,
        path,
        Some(json!({"email": "not an address"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api_send(
        &mut b,
        Method::PUT,
        path,
        Some(json!({"choices": {"gossip": ["inbox"]}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let hook = "/api/account/notifications/webhook";
    let (s, _) = api_send(
        &mut b,
        Method::PUT,
        hook,
        Some(json!({"url": "https://10.0.0.5/hook"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a webhook into the node's own networks"
    );
    let (s, set) = api_send(
        &mut b,
        Method::PUT,
        hook,
        Some(json!({"url": "https://hooks.example.org/pat"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    assert!(set["secret"].as_str().unwrap().starts_with("whsec_"));
    // Changing the choices keeps the webhook; the secret is never shown again.
    let (_, saved) = api_send(&mut b, Method::PUT, path, Some(choose)).await;
    assert_eq!(saved["webhook"], "https://hooks.example.org/pat");
    assert!(!saved.to_string().contains(set["secret"].as_str().unwrap()));
    let (s, _) = api_send(&mut b, Method::DELETE, hook, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, shown) = api_send(&mut b, Method::GET, path, None).await;
    assert!(shown["webhook"].is_null());
    assert_eq!(shown["email"], "pat@example.org");
}

async fn org_admins_verify_their_practitioners(node: Node) {
    seed_people(&node).await;
    let (_, totp) = create_user(&node, "org-admin", "orgadmin", &["--organization", "org1"]);
    let (ours, _) = create_user(
        &node,
        "practitioner",
        "drours",
        &[
            "--practitioner",
            "dr1",
            "--organization",
            "org1",
            "--specialty",
            "394579002",
        ],
    );
    let (theirs, _) = create_user(
        &node,
        "practitioner",
        "drtheirs",
        &["--practitioner", "dr1", "--organization", "org2"],
    );
    let token_for = |user: &str| {
        let out = node.cli(&[
            "admin",
            "token",
            "--user",
            user,
            "--scope",
            "user/Observation.rs",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    };
    assert!(
        token_for("drours").is_none(),
        "unverified: no clinical scope"
    );
    let mut admin = Browser::new(&node);
    admin.login("orgadmin", totp.as_deref()).await;
    let (s, body) = api_post(
        &mut admin,
        &format!("/api/users/{ours}/verification"),
        json!({"status": "verified"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let t = token_for("drours").expect("verified: clinical scopes");
    assert_eq!(fhir_get(&node, &t, "Observation/o1").await, StatusCode::OK);
    let (s, _) = api_post(
        &mut admin,
        &format!("/api/users/{theirs}/verification"),
        json!({"status": "verified"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "another organization's practitioner"
    );
    // Suspension takes the access away again.
    api_post(
        &mut admin,
        &format!("/api/users/{ours}/verification"),
        json!({"status": "suspended"}),
    )
    .await;
    assert!(token_for("drours").is_none());
}

async fn a_patient_can_turn_on_two_factor(node: Node) {
    seed_people(&node).await;
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let mut b = Browser::new(&node);
    b.login("pat", None).await;
    let (s, started) = api_post(&mut b, "/api/account/totp", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let uri = started["uri"].as_str().unwrap().to_string();
    assert!(started["qr_svg"].as_str().unwrap().contains("<svg"));
    // Until confirmed, the password alone still signs in.
    let mut other = Browser::new(&node);
    assert_eq!(
        other.password("pat", PASSWORD).await.0,
        StatusCode::SEE_OTHER
    );
    let (s, _) = api_post(
        &mut b,
        "/api/account/totp/confirm",
        json!({"code": "000000"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a wrong code");
    let (s, done) = api_post(
        &mut b,
        "/api/account/totp/confirm",
        json!({"code": code_for(&uri, 0)}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    // From now on a code is needed.
    let mut next = Browser::new(&node);
    let (s, page) = next.password("pat", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Enter your code"));
}

/// One call of the JSON API as a test describes it.
struct Call {
    method: reqwest::Method,
    path: String,
    /// Send the browser's session cookie.
    cookie: bool,
    /// Send the session's CSRF token.
    csrf: bool,
    /// A bearer token instead of a session.
    bearer: Option<String>,
    /// The body and its content type.
    body: Option<(&'static str, String)>,
    /// A path or method the node does not serve: its JSON is the router's own, not an
    /// OperationOutcome.
    unserved: bool,
}

impl Call {
    fn new(method: reqwest::Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            cookie: false,
            csrf: false,
            bearer: None,
            body: None,
            unserved: false,
        }
    }
    fn unserved(mut self) -> Self {
        self.unserved = true;
        self
    }
    fn session(mut self) -> Self {
        self.cookie = true;
        self.csrf = true;
        self
    }
    fn cookie_only(mut self) -> Self {
        self.cookie = true;
        self
    }
    fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }
    fn json(mut self, body: &str) -> Self {
        self.body = Some(("application/json", body.to_string()));
        self
    }
    fn text(mut self, body: &str) -> Self {
        self.body = Some(("text/plain", body.to_string()));
        self
    }
}

/// Sends `call` and checks that the answer has `want` status and a JSON body (an
/// OperationOutcome for a failure); returns the body.
async fn expect_json(b: &Browser, csrf: &str, call: Call, want: StatusCode) -> Value {
    let what = format!(
        "{} {} {:?}",
        call.method,
        call.path,
        call.body.as_ref().map(|b| &b.1)
    );
    let unserved = call.unserved;
    let mut r = b
        .http
        .request(call.method, format!("{}{}", b.base, call.path));
    if call.cookie {
        r = r.header("cookie", b.cookie_header());
    }
    if call.csrf {
        r = r.header("x-csrf-token", csrf);
    }
    if let Some(t) = call.bearer {
        r = r.bearer_auth(t);
    }
    if let Some((kind, body)) = call.body {
        r = r.header("content-type", kind).body(body);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "{what}: {text}");
    assert!(kind.contains("json"), "{what} answered {kind}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
    if !status.is_success() && !unserved {
        assert_eq!(body["resourceType"], "OperationOutcome", "{what}: {text}");
    }
    body
}

/// Every JSON route answers JSON whatever goes wrong: a missing session or token (401), a
/// missing CSRF token or a refusal (403), a malformed body, query or path (400), an unknown
/// target (404) and a conflict (409); none answers an HTML page or a redirect to /login.
async fn json_routes_answer_json_on_every_failure(node: Node) {
    use reqwest::Method;
    seed_people(&node).await;
    let (_, admin_totp) = create_user(&node, "org-admin", "orgadmin", &["--organization", "org1"]);
    create_user(&node, "patient", "pat", &["--patient", "p1"]);
    let clinician = {
        let out = node.cli(&["admin", "token", "--scope", "user/*.cruds"]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut patient = Browser::new(&node);
    patient.login("pat", None).await;
    let pcsrf = patient.account().await["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let mut admin = Browser::new(&node);
    admin.login("orgadmin", admin_totp.as_deref()).await;
    let acsrf = admin.account().await["csrf"].as_str().unwrap().to_string();
    let (u, b, p) = (StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST, &patient);

    // The account API the pages call with the session.
    for (method, path) in [
        (Method::GET, "/api/account"),
        (Method::POST, "/api/account/link"),
        (Method::POST, "/api/invitations"),
        (Method::POST, "/api/users/u1/verification"),
        (Method::POST, "/api/account/totp"),
        (Method::POST, "/api/account/totp/confirm"),
        (Method::POST, "/api/launch"),
    ] {
        expect_json(p, &pcsrf, Call::new(method.clone(), path).json("{}"), u).await;
        if method == Method::POST {
            let no_csrf = Call::new(method, path).cookie_only().json("{}");
            expect_json(p, &pcsrf, no_csrf, StatusCode::FORBIDDEN).await;
        }
    }
    for path in [
        "/api/account/link",
        "/api/invitations",
        "/api/account/totp/confirm",
        "/api/launch",
    ] {
        expect_json(
            p,
            &pcsrf,
            Call::new(Method::POST, path).session().json("{"),
            b,
        )
        .await;
        expect_json(
            p,
            &pcsrf,
            Call::new(Method::POST, path).session().json("{}"),
            b,
        )
        .await;
        let not_json = Call::new(Method::POST, path).session().text("code");
        expect_json(p, &pcsrf, not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let bad_role = Call::new(Method::POST, "/api/invitations")
        .session()
        .json(r#"{"role":"wizard"}"#);
    expect_json(p, &pcsrf, bad_role, b).await;
    let link_as_admin = Call::new(Method::POST, "/api/account/link")
        .session()
        .json(r#"{"code":"x"}"#);
    expect_json(&admin, &acsrf, link_as_admin, StatusCode::FORBIDDEN).await;
    let bad_status = Call::new(Method::POST, "/api/users/u1/verification")
        .session()
        .json(r#"{"status":"maybe"}"#);
    expect_json(&admin, &acsrf, bad_status, b).await;
    let unknown_user = Call::new(Method::POST, "/api/users/no-such-user/verification")
        .session()
        .json(r#"{"status":"verified"}"#);
    expect_json(&admin, &acsrf, unknown_user, StatusCode::NOT_FOUND).await;
    expect_json(
        p,
        &pcsrf,
        Call::new(Method::GET, "/api/account").session(),
        StatusCode::OK,
    )
    .await;

    // Oversight, break-glass, referrals, documents and keys: bearer token or session.
    for (method, path) in [
        (Method::GET, "/api/patients/p1/audit"),
        (Method::GET, "/api/patients/p1/access"),
        (Method::GET, "/api/patients/p1/notifications"),
        (Method::POST, "/api/patients/p1/notifications/n1/read"),
        (Method::POST, "/api/patients/p1/break-glass"),
        (Method::POST, "/api/referrals/t1/accept"),
        (Method::GET, "/api/break-glass"),
        (Method::POST, "/api/audit/checkpoint"),
        (Method::GET, "/api/audit/entries/0/proof"),
        (Method::POST, "/api/documents"),
        (Method::GET, "/api/documents/b1/link"),
        (Method::GET, "/api/keys?owner=Patient/p1"),
        (Method::POST, "/api/keys"),
        (Method::DELETE, "/api/keys/k1"),
        (Method::GET, "/api/sealed/b1/keys"),
        (Method::GET, "/api/sealed/b1/shares"),
    ] {
        expect_json(p, &pcsrf, Call::new(method, path).json("{}"), u).await;
    }
    let t = clinician.as_str();
    for path in [
        "/api/patients/p1/audit",
        "/api/patients/p1/access",
        "/api/patients/p1/notifications",
    ] {
        // Oversight data a caller may not see answers as if there were none.
        expect_json(
            p,
            &pcsrf,
            Call::new(Method::GET, path).bearer(t),
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let read = Call::new(Method::POST, "/api/patients/p1/notifications/n1/read").session();
    expect_json(p, &pcsrf, read, StatusCode::NOT_FOUND).await;
    let queue = Call::new(Method::GET, "/api/break-glass").session();
    expect_json(p, &pcsrf, queue, StatusCode::NOT_FOUND).await;
    let glass = Call::new(Method::POST, "/api/patients/p1/break-glass")
        .bearer(t)
        .json("[1]");
    expect_json(p, &pcsrf, glass, b).await;
    let referral = Call::new(Method::POST, "/api/referrals/no-such-task/accept").bearer(t);
    expect_json(p, &pcsrf, referral, StatusCode::NOT_FOUND).await;
    let proof = Call::new(Method::GET, "/api/audit/entries/abc/proof").bearer(t);
    expect_json(p, &pcsrf, proof, b).await;
    let consistency = Call::new(Method::GET, "/api/audit/consistency?from=abc");
    expect_json(p, &pcsrf, consistency, b).await;
    let upload = Call::new(Method::POST, "/api/documents")
        .bearer(t)
        .json("{}");
    expect_json(p, &pcsrf, upload, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let link = Call::new(Method::GET, "/api/documents/no-such-binary/link").bearer(t);
    expect_json(p, &pcsrf, link, StatusCode::NOT_FOUND).await;
    let no_owner = Call::new(Method::GET, "/api/keys").bearer(t);
    expect_json(p, &pcsrf, no_owner, b).await;
    let bad_key = Call::new(Method::POST, "/api/keys")
        .session()
        .json(r#"{"kind":"signing"}"#);
    expect_json(p, &pcsrf, bad_key, b).await;
    let revoke = Call::new(Method::DELETE, "/api/keys/no-such-key").session();
    expect_json(p, &pcsrf, revoke, StatusCode::NOT_FOUND).await;
    let shares = Call::new(Method::GET, "/api/sealed/no-such-binary/shares").session();
    expect_json(p, &pcsrf, shares, StatusCode::NOT_FOUND).await;

    // An account linked to a patient record cannot be linked to another one.
    let relink = Call::new(Method::POST, "/api/account/link")
        .session()
        .json(r#"{"code":"x"}"#);
    expect_json(p, &pcsrf, relink, StatusCode::CONFLICT).await;
    // Registering a key is idempotent; its JSON answer is checked too.
    let signing = medmesh_crypto::UserSigningKey::generate(&medmesh_crypto::OsRandom);
    let public = signing.public().to_base64();
    let statement = medmesh_crypto::KeyStatement {
        owner: "Patient/p1".into(),
        kind: "signing".into(),
        key: public.clone(),
        time: "2026-01-01T00:00:00Z".into(),
    };
    let signature = signing.sign_statement(&statement).unwrap().to_base64();
    let body = json!({"kind": "signing", "publicKey": public, "time": statement.time, "signature": signature}).to_string();
    let register = || Call::new(Method::POST, "/api/keys").session().json(&body);
    expect_json(p, &pcsrf, register(), StatusCode::CREATED).await;
    expect_json(p, &pcsrf, register(), StatusCode::CREATED).await;

    // Paths and methods the API does not serve.
    expect_json(
        p,
        &pcsrf,
        Call::new(Method::GET, "/api/no-such-route").unserved(),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_json(
        p,
        &pcsrf,
        Call::new(Method::PUT, "/api/account").unserved(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

on_both_databases!(
    a_patient_sets_their_notifications,
    json_routes_answer_json_on_every_failure,
    org_admins_verify_their_practitioners,
    a_patient_can_turn_on_two_factor,
    a_practitioner_picks_the_launch_patient,
    login_needs_password_and_a_fresh_totp_code,
    csrf_tokens_are_required,
    brute_force_hits_the_throttle,
    smart_code_flow_with_pkce,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    backend_services_use_private_key_jwt,
    introspection_and_revocation,
    forged_tokens_are_refused,
    discovery_documents,
    roles_cap_scopes_and_invitations_create_accounts,
);
