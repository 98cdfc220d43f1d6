use super::*;
use crate::stand_in::{Site, serve};
use serde_json::json;

fn entries(n: i64) -> Vec<Value> {
    // Every 5 minutes from 2024-03-01T00:00Z, newest last.
    (0..n)
        .map(|i| {
            json!({"_id": format!("e{i}"), "type": "sgv", "sgv": 100 + i % 50,
                   "date": 1_709_251_200_000i64 + i * 300_000, "device": "xDrip-DexcomG6"})
        })
        .collect()
}

/// The site at `url` through a connector of its own.
fn open_site(
    url: &str,
    credential: RemoteCredential,
    allow_internal: bool,
) -> Result<NightscoutSite, RemoteError> {
    NightscoutConnector::new(allow_internal)
        .unwrap()
        .site(url, credential)
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn items(doc: Option<Vec<u8>>) -> Vec<Value> {
    match serde_json::from_slice(&doc.unwrap()).unwrap() {
        Value::Array(v) => v,
        _ => panic!("not a list"),
    }
}

#[test]
fn the_api_secret_goes_as_its_sha1() {
    assert_eq!(
        api_secret_header("hunter2hunter2"),
        "fc8c5eb194806e31a213f073131e73b0012a0fb5"
    );
    assert_eq!(
        api_secret_header("FC8C5EB194806E31A213F073131E73B0012A0FB5"),
        "fc8c5eb194806e31a213f073131e73b0012a0fb5"
    );
}

#[test]
fn the_node_s_own_networks_are_refused_unless_allowed() {
    let refused = open_site("https://127.0.0.1/", RemoteCredential::None, false);
    assert!(matches!(refused, Err(RemoteError::NotAllowed(_))));
    let refused = open_site("http://ns.example.org/", RemoteCredential::None, false);
    assert!(matches!(refused, Err(RemoteError::NotAllowed(_))));
    assert!(open_site("https://ns.example.org/", RemoteCredential::None, false).is_ok());
}

#[tokio::test]
async fn a_window_is_read_whole_with_the_secret_even_when_the_site_caps_its_pages() {
    let site = serve(Site {
        entries: entries(600),
        treatments: vec![
            json!({"_id": "t1", "eventType": "Meal Bolus", "insulin": 4.5, "carbs": 40,
                   "created_at": "2024-03-01T12:00:00.000Z"}),
            json!({"_id": "t2", "eventType": "Correction Bolus", "insulin": 1.0,
                   "created_at": "2024-03-03T12:00:00.000Z"}),
        ],
        profile: vec![json!({"_id": "p1", "defaultProfile": "Default", "store": {}})],
        secret: Some("hunter2hunter2".into()),
        max_count: 70,
        ..Site::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}/", site.addr);
    let ns = open_site(
        &url,
        RemoteCredential::ApiSecret("hunter2hunter2".into()),
        true,
    )
    .unwrap();
    // The first two days: 576 entries, one treatment.
    let got = items(
        ns.fetch(ts("2024-03-01T00:00:00Z"), ts("2024-03-03T00:00:00Z"))
            .await
            .unwrap(),
    );
    let sgv = got.iter().filter(|v| v["type"] == "sgv").count();
    assert_eq!(sgv, 576);
    assert_eq!(
        got.iter().filter(|v| v.get("eventType").is_some()).count(),
        1
    );
    assert_eq!(got.iter().filter(|v| v.get("store").is_some()).count(), 1);
    // Capped at 70 a page: 576 / 69 new per page, plus the page with nothing new.
    assert!(site.requests.load(Ordering::Relaxed) <= 16);
    // The profile comes once; an empty window is None.
    let rest = items(
        ns.fetch(ts("2024-03-03T00:00:00Z"), ts("2024-03-04T00:00:00Z"))
            .await
            .unwrap(),
    );
    assert_eq!(rest.len(), 600 - 576 + 1);
    assert!(
        ns.fetch(ts("2024-04-01T00:00:00Z"), ts("2024-04-02T00:00:00Z"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_a_token_reads() {
    let site = serve(Site {
        entries: entries(10),
        secret: Some("hunter2hunter2".into()),
        token: Some("readable-0123456789abcdef".into()),
        ..Site::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}/", site.addr);
    let (from, to) = (ts("2024-03-01T00:00:00Z"), ts("2024-03-02T00:00:00Z"));
    let wrong = open_site(&url, RemoteCredential::ApiSecret("guess".into()), true).unwrap();
    assert_eq!(
        wrong.fetch(from, to).await.unwrap_err(),
        RemoteError::Refused
    );
    let token = open_site(
        &url,
        RemoteCredential::Token("readable-0123456789abcdef".into()),
        true,
    )
    .unwrap();
    assert_eq!(items(token.fetch(from, to).await.unwrap()).len(), 10);
    // A share link with the token in it.
    let link = format!("{url}?token=readable-0123456789abcdef");
    let linked = open_site(&link, RemoteCredential::None, true).unwrap();
    assert_eq!(items(linked.fetch(from, to).await.unwrap()).len(), 10);
}

#[tokio::test]
async fn what_is_not_nightscout_or_not_there_says_so() {
    let site = serve(Site::default()).await.unwrap();
    let elsewhere = format!("http://{}/not-nightscout/", site.addr);
    let ns = open_site(&elsewhere, RemoteCredential::None, true).unwrap();
    let (from, to) = (ts("2024-03-01T00:00:00Z"), ts("2024-03-02T00:00:00Z"));
    assert!(matches!(
        ns.fetch(from, to).await,
        Err(RemoteError::NotTheService(_))
    ));
    // Nothing listens on port 9 of loopback.
    let gone = open_site("http://127.0.0.1:9/", RemoteCredential::None, true).unwrap();
    assert_eq!(
        gone.fetch(from, to).await.unwrap_err(),
        RemoteError::Unreachable
    );
}
