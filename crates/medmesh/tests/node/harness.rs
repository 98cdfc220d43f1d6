//! Spawns the real `medmesh` binary on port 0 with a fresh store, and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Which database a node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    pub base: String,
    pub data_dir: Arc<tempfile::TempDir>,
    pub db_url: Option<String>,
    pg: Option<Arc<PgDatabase>>,
    pub client: reqwest::Client,
    pub token: String,
    /// Extra environment for every command of this node.
    env: Vec<(String, String)>,
    /// Where it accepts MLLP, when it does (`host:port`).
    pub mllp: Option<String>,
}

pub fn shared_testdata(dir: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata")
        .join(dir);
    assert!(
        p.is_dir(),
        "shared test data missing at {}: clone the project beside ../shared",
        p.display()
    );
    p
}

/// Runs `$body` with `$c` bound to a fresh connection to the node's own database, whichever
/// it is: the body is written once and compiled for both connection types.
macro_rules! on_connection {
    ($node:expr, |$c:ident| $body:expr) => {{
        use sqlx::Connection;
        match &$node.db_url {
            Some(url) => {
                let mut $c = sqlx::PgConnection::connect(url).await.expect("connect");
                $body
            }
            None => {
                let path = $node.data_dir.path().join("medmesh.db");
                let mut $c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("connect");
                $body
            }
        }
    }};
}

/// A PostgreSQL database made for one test, dropped when the last node using it goes.
struct PgDatabase {
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", pg_admin_url()),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn pg_admin_url() -> String {
    std::env::var("MEDMESH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn psql(db: &str, sql: &str) -> Output {
    let out = Command::new("psql")
        .args([
            &format!("{}/{db}", pg_admin_url()),
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        ])
        .output()
        .expect("psql must be installed for the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Node {
    pub async fn start(db: Db) -> Node {
        Self::start_with_env(db, &[]).await
    }

    /// A node on an existing, shared SQLite data directory.
    pub async fn start_on_dir(dir: Arc<tempfile::TempDir>) -> Node {
        let mut node = Node {
            child: None,
            base: String::new(),
            data_dir: dir,
            db_url: None,
            pg: None,
            client: reqwest::Client::new(),
            token: String::new(),
            env: Vec::new(),
            mllp: None,
        };
        node.spawn().await;
        node.token = node.mint_token("system/*.*");
        node
    }

    /// A second node on this node's database and data directory (its key file, its blob
    /// folder): a replica, as a deployment on PostgreSQL runs several.
    pub async fn replica(&self) -> Node {
        assert!(self.is_postgres(), "replicas share a PostgreSQL database");
        let mut node = Node {
            child: None,
            base: String::new(),
            data_dir: self.data_dir.clone(),
            db_url: self.db_url.clone(),
            pg: self.pg.clone(),
            client: reqwest::Client::new(),
            token: String::new(),
            env: self.env.clone(),
            mllp: None,
        };
        node.spawn().await;
        node.token = self.token.clone();
        node
    }

    /// A fresh node with extra environment variables.
    pub async fn start_with_env(db: Db, env: &[(&str, &str)]) -> Node {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let (db_url, pg) = match db {
            Db::Sqlite => (None, None),
            Db::Postgres => {
                let name = format!("medmesh_test_{}", uuid::Uuid::new_v4().simple());
                psql("postgres", &format!("CREATE DATABASE {name}"));
                (
                    Some(format!("{}/{name}", pg_admin_url())),
                    Some(Arc::new(PgDatabase { name })),
                )
            }
        };
        let mut node = Node {
            child: None,
            base: String::new(),
            data_dir: Arc::new(data_dir),
            db_url,
            pg,
            client: reqwest::Client::new(),
            token: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mllp: None,
        };
        node.spawn().await;
        node.token = node.mint_token("system/*.*");
        node
    }

    /// Every node of the suite logs at debug level, and its log is searched for patients'
    /// identifying values when it stops (see `Drop`).
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_medmesh"));
        c.env_remove("MEDMESH_DATABASE_URL")
            .env_remove("MEDMESH_DATA_DIR")
            .env_remove("MEDMESH_ENCRYPTION_AT_REST")
            .env("MEDMESH_LOG", "debug");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Reads one integer with SQL, straight from the node's database.
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        on_connection!(self, |c| sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("sql"))
    }

    /// The binary with one extra environment variable.
    pub fn command_with_env(&self, key: &str, value: &str) -> Command {
        let mut c = self.command();
        c.env(key, value);
        c
    }

    /// The store arguments every command of this node takes.
    pub fn store_args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".to_string(),
            self.data_dir.path().display().to_string(),
        ];
        if let Some(u) = &self.db_url {
            a.push("--database-url".into());
            a.push(u.clone());
        }
        a
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("node.log"))
            .expect("log file");
        let mut child = self
            .command()
            .arg("serve")
            .args(self.store_args())
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn medmesh");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("medmesh MLLP listening on ") {
                    let _ = tx.send(format!("mllp:{addr}"));
                }
                if let Some(url) = line.strip_prefix("medmesh listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let mut url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("node did not start; log: {}", self.log()));
        self.mllp = None;
        if let Some(addr) = url.strip_prefix("mllp:") {
            self.mllp = Some(addr.to_string());
            url = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("node did not start; log: {}", self.log()));
        }
        self.base = url;
        self.child = Some(child);
        // Poll for readiness.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(Instant::now() < deadline, "node never became healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets an environment variable for the node's next start (and its commands).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Kills the node (as a crash would) and starts it again on the same store.
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn().await;
    }

    /// Copies the whole database aside (the node is stopped): a backup an operator could
    /// put back later.
    pub fn save_database(&self) {
        match self.pg.as_ref() {
            Some(pg) => {
                psql(
                    "postgres",
                    &format!("CREATE DATABASE {0}_saved TEMPLATE {0}", pg.name),
                );
            }
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let from = self.data_dir.path().join(format!("medmesh.db{suffix}"));
                    if from.exists() {
                        std::fs::copy(
                            &from,
                            self.data_dir.path().join(format!("saved.db{suffix}")),
                        )
                        .expect("copy the database");
                    }
                }
            }
        }
    }

    /// Puts back the database [`Self::save_database`] copied (the node is stopped).
    pub fn restore_database(&self) {
        match self.pg.as_ref() {
            Some(pg) => {
                psql(
                    "postgres",
                    &format!("DROP DATABASE {} WITH (FORCE)", pg.name),
                );
                psql(
                    "postgres",
                    &format!("CREATE DATABASE {0} TEMPLATE {0}_saved", pg.name),
                );
                psql("postgres", &format!("DROP DATABASE {}_saved", pg.name));
            }
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let to = self.data_dir.path().join(format!("medmesh.db{suffix}"));
                    let _ = std::fs::remove_file(&to);
                    let from = self.data_dir.path().join(format!("saved.db{suffix}"));
                    if from.exists() {
                        std::fs::rename(&from, &to).expect("restore the database");
                    }
                }
            }
        }
    }

    /// Sends SIGTERM, as a service manager does, and waits for the node to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("a running node");
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        c.wait().expect("wait for the node")
    }

    /// The node process's id (for reading its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running node").id()
    }

    /// The node's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM in /proc/<pid>/status")
            * 1024
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("node.log")).unwrap_or_default()
    }

    /// Whether this node runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.db_url.is_some()
    }

    /// Runs SQL statements directly on the node's database, behind its back (tamper tests).
    pub async fn raw_sql(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        on_connection!(self, |c| {
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw sql");
        })
    }

    /// Runs a CLI command against this node's store.
    pub fn cli(&self, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_at(
            if matches!(args.first(), Some(&"admin" | &"audit" | &"keys")) {
                2
            } else {
                1
            },
        );
        self.command()
            .args(cmd)
            .args(self.store_args())
            .args(rest)
            .output()
            .expect("run medmesh")
    }

    /// Runs `medmesh doc ...` against this node with `token` (in MEDMESH_TOKEN, as a user
    /// would), from `cwd`.
    pub fn doc(&self, token: &str, cwd: &std::path::Path, args: &[&str]) -> Output {
        self.command()
            .current_dir(cwd)
            .env("MEDMESH_TOKEN", token)
            .env("MEDMESH_NODE", &self.base)
            .arg("doc")
            .args(args)
            .output()
            .expect("run medmesh doc")
    }

    /// Every data key row, as `(key id, owner, wrapped bytes)`, read behind the node's back.
    pub async fn data_key_rows(&self) -> Vec<(String, String, Vec<u8>)> {
        let sql = "SELECT key_id, owner, wrapped FROM data_keys";
        on_connection!(self, |c| sqlx::query_as(sql)
            .fetch_all(&mut c)
            .await
            .expect("sql"))
    }

    /// Runs a CLI command with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let (cmd, rest) = args.split_at(
            if matches!(args.first(), Some(&"admin" | &"audit" | &"keys")) {
                2
            } else {
                1
            },
        );
        let mut child = self
            .command()
            .args(cmd)
            .args(self.store_args())
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run medmesh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    pub fn mint_token(&self, scope: &str) -> String {
        let out = self.cli(&["admin", "token", "--scope", scope]);
        assert!(
            out.status.success(),
            "admin token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    }

    /// The same running node and store, seen through another access token. The view does
    /// not own the process: the original node stops it.
    pub fn with_token(&self, token: &str) -> Node {
        Node {
            child: None,
            base: self.base.clone(),
            data_dir: self.data_dir.clone(),
            db_url: self.db_url.clone(),
            pg: self.pg.clone(),
            client: self.client.clone(),
            token: token.to_string(),
            env: self.env.clone(),
            mllp: self.mllp.clone(),
        }
    }

    /// The same caller (token) against `node`, after it restarted on another port.
    pub fn with_base(&self, node: &Node) -> Node {
        let mut n = self.with_token(&self.token);
        n.base = node.base.clone();
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/fhir/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, body)
    }

    pub fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(&self.token)
    }

    /// A URL outside the FHIR base (`/api/...`).
    pub fn root_url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// GET on a path outside the FHIR base, with this node's token.
    pub async fn get_raw(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(self.auth(self.client.get(self.root_url(path))))
            .await
    }

    /// GET on a path outside the FHIR base, with this node's token: the body's bytes.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let r = self
            .auth(self.client.get(self.root_url(path)))
            .send()
            .await
            .expect("request");
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.bytes().await.expect("body").to_vec())
    }

    /// POST JSON on a path outside the FHIR base, with this node's token.
    pub async fn post_raw(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        self.send(self.auth(self.client.post(self.root_url(path))).json(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(self.auth(self.client.get(self.url(path)))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        self.send(
            self.auth(self.client.post(self.url(path)))
                .header("content-type", "application/fhir+json")
                .json(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        self.send(
            self.auth(self.client.put(self.url(path)))
                .header("content-type", "application/fhir+json")
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(self.auth(self.client.delete(self.url(path))))
            .await
    }

    /// Searches and returns the Bundle, asserting 200.
    pub async fn search(&self, query: &str) -> Value {
        let (s, _, b) = self.get(query).await;
        assert_eq!(s, StatusCode::OK, "{query}: {b}");
        b
    }

    /// `total` of a search (asking for an accurate total).
    pub async fn total(&self, query: &str) -> u64 {
        let sep = if query.contains('?') { '&' } else { '?' };
        let b = self.search(&format!("{query}{sep}_total=accurate")).await;
        b["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("no total for {query}: {b}"))
    }

    /// Ids of the `match` entries of a search.
    pub async fn ids(&self, query: &str) -> Vec<String> {
        let b = self.search(query).await;
        matches(&b)
    }

    /// Imports files with the CLI.
    pub fn import(&self, paths: &[PathBuf]) -> Output {
        let mut args = vec!["import".to_string()];
        args.extend(self.store_args());
        args.extend(paths.iter().map(|p| p.display().to_string()));
        self.command().args(&args).output().expect("import")
    }

    /// Loads the shared Synthea sample (information bundles first).
    pub fn load_synthea(&self) {
        let dir = shared_testdata("fhir-r4-synthea-smart-generated-sample-data");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort_by_key(|p| {
            (
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("Information")),
                p.clone(),
            )
        });
        let out = self.import(&files);
        assert_no_phi(&String::from_utf8_lossy(&out.stderr), "the import's log");
        assert_no_phi(&String::from_utf8_lossy(&out.stdout), "the import's output");
        assert!(
            out.status.success(),
            "import failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The URL of a Bundle's `next` link, if any.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()
        .map(str::to_string)
}

/// The diagnostics of a search Bundle's `outcome` entry (panics when it has none).
pub fn outcome_diagnostics(bundle: &Value) -> String {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry")["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every entry of a Bundle as `Type/id`, sorted.
pub fn ids_of(bundle: &Value) -> Vec<String> {
    let mut v: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str()?,
                e["resource"]["id"].as_str()?
            ))
        })
        .collect();
    v.sort();
    v
}

/// Ids of a Bundle's `match` entries.
pub fn matches(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Node {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = c.kill();
        let _ = c.wait();
        // No patient's identifying values in the (debug-level) log.
        if !std::thread::panicking() {
            assert_no_phi(&self.log(), "the node's log");
        }
    }
}

/// Identifying values of the shared Synthea patients: family and given names, phones,
/// address lines and identifier values. Values that are also a practitioner's or an
/// organization's name are left out: the directory is public and indexed in clear.
pub fn synthea_secrets() -> Vec<String> {
    static SECRETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SECRETS
        .get_or_init(|| {
            let dir = shared_testdata("fhir-r4-synthea-smart-generated-sample-data");
            let mut patients = Vec::new();
            let mut directory = std::collections::HashSet::new();
            for f in std::fs::read_dir(dir).expect("dir") {
                let b: Value =
                    serde_json::from_slice(&std::fs::read(f.expect("entry").path()).expect("read"))
                        .expect("json");
                for e in b["entry"].as_array().into_iter().flatten() {
                    let r = &e["resource"];
                    let strings = |v: &Value| -> Vec<String> {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    };
                    match r["resourceType"].as_str() {
                        Some("Patient") => {
                            for n in r["name"].as_array().into_iter().flatten() {
                                patients.extend(n["family"].as_str().map(str::to_string));
                                patients.extend(strings(&n["given"]));
                            }
                            for t in r["telecom"].as_array().into_iter().flatten() {
                                patients.extend(t["value"].as_str().map(str::to_string));
                            }
                            for a in r["address"].as_array().into_iter().flatten() {
                                patients.extend(strings(&a["line"]));
                            }
                            for i in r["identifier"].as_array().into_iter().flatten() {
                                patients.extend(i["value"].as_str().map(str::to_string));
                            }
                        }
                        Some("Practitioner" | "Organization") => {
                            let text = r["name"].to_string().to_lowercase();
                            directory.extend(
                                text.split(|c: char| !c.is_alphanumeric())
                                    .filter(|w| !w.is_empty())
                                    .map(str::to_string),
                            );
                        }
                        _ => {}
                    }
                }
            }
            patients.sort();
            patients.dedup();
            patients.retain(|p| !directory.contains(&p.to_lowercase()));
            patients
        })
        .clone()
}

/// Fails if `text` holds any of the Synthea patients' identifying values. Short values are
/// matched as whole words, long ones anywhere.
pub fn assert_no_phi(text: &str, what: &str) {
    let lower = text.to_lowercase();
    let words: std::collections::HashSet<&str> =
        text.split(|c: char| !c.is_alphanumeric()).collect();
    for s in synthea_secrets() {
        let hit = if s.len() >= 5 {
            text.contains(&s) || lower.contains(&s.to_lowercase())
        } else {
            words.contains(s.as_str())
        };
        assert!(!hit, "{what} holds a patient's identifying value {s:?}");
    }
}

/// Runs each named test function on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Node::start($crate::harness::Db::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Node::start($crate::harness::Db::Postgres).await).await
                }
            }
        )*
    };
}
