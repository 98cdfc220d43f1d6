//! A Subscription as a client writes it (R4, with the backport's extensions), read into
//! what the node keeps, and rendered back with its state.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::topic::{Filter, Topic, parse_filters};

/// The backport's structure definitions.
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// Headers one subscription may carry, and the longest one.
const MAX_HEADERS: usize = 10;
const MAX_HEADER_LEN: usize = 4096;
/// The shortest and longest heartbeat period, seconds.
const MIN_HEARTBEAT: u64 = 60;
const MAX_HEARTBEAT: u64 = 7 * 24 * 3600;
/// What a header's value reads as when the Subscription is read back.
pub const REDACTED: &str = "[redacted]";

/// What a notification carries of the resource it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// Nothing: the receiver asks `$status` or searches.
    Empty,
    /// Its reference: the receiver reads it with its own token.
    IdOnly,
    /// The resource itself.
    FullResource,
}

impl Content {
    fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::IdOnly => "id-only",
            Self::FullResource => "full-resource",
        }
    }
}

/// What the node keeps of a Subscription (sealed, as it may name a patient or a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Its topic.
    pub topic: Topic,
    /// Its filters.
    pub filters: Vec<Filter>,
    /// Where notifications are POSTed.
    pub endpoint: String,
    /// `Name: value` headers sent with each.
    pub headers: Vec<String>,
    /// `application/fhir+json` or `application/json`.
    pub mime: String,
    /// What each carries.
    pub content: Content,
    /// When it ends, microseconds.
    pub end: Option<i64>,
    /// Seconds between heartbeats, when asked for.
    pub heartbeat_seconds: Option<u64>,
    /// The scopes the owner held on the topic when subscribing.
    pub scopes: Vec<String>,
    /// The patient context it subscribed in (a SMART launch's patient).
    #[serde(default)]
    pub patient: Option<String>,
    /// The resource as written (its id, status and meta set by the node).
    pub resource: Value,
}

fn extension<'a>(holder: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    let url = format!("{BACKPORT}{name}");
    holder["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["url"].as_str() == Some(url.as_str()))
}

/// Reads a Subscription a client wrote. `previous` is the one it replaces, whose header
/// values a `[redacted]` value keeps.
///
/// # Errors
/// A sentence for the client, and the element it is about.
pub fn read_subscription(
    resource: &Value,
    previous: Option<&Spec>,
) -> Result<Spec, (String, &'static str)> {
    if resource["resourceType"].as_str() != Some("Subscription") {
        return Err(("the body is not a Subscription".into(), "Subscription"));
    }
    let criteria = resource["criteria"].as_str().unwrap_or_default();
    let topic = Topic::from_canonical(criteria).ok_or_else(|| {
        (
            format!(
                "criteria names a topic this node does not have; it has {}",
                Topic::ALL.map(Topic::canonical).join(", ")
            ),
            "Subscription.criteria",
        )
    })?;
    let filter_texts: Vec<String> = extension(&resource["_criteria"], "backport-filter-criteria")
        .filter_map(|e| e["valueString"].as_str().map(str::to_string))
        .collect();
    let filters =
        parse_filters(topic, &filter_texts).map_err(|why| (why, "Subscription.criteria"))?;
    let channel = &resource["channel"];
    match channel["type"].as_str() {
        Some("rest-hook") => {}
        _ => {
            return Err((
                "this node sends rest-hook notifications only".into(),
                "Subscription.channel.type",
            ));
        }
    }
    let endpoint = channel["endpoint"]
        .as_str()
        .filter(|e| !e.is_empty() && e.len() <= 2048)
        .ok_or((
            "a rest-hook needs an endpoint".into(),
            "Subscription.channel.endpoint",
        ))?
        .to_string();
    let mime = match channel["payload"].as_str() {
        None | Some("application/fhir+json") => "application/fhir+json",
        Some("application/json") => "application/json",
        Some(_) => {
            return Err((
                "notifications are sent as application/fhir+json".into(),
                "Subscription.channel.payload",
            ));
        }
    }
    .to_string();
    let content = match extension(&channel["_payload"], "backport-payload-content")
        .find_map(|e| e["valueCode"].as_str())
    {
        None | Some("id-only") => Content::IdOnly,
        Some("empty") => Content::Empty,
        Some("full-resource") => Content::FullResource,
        Some(_) => {
            return Err((
                "payload content is empty, id-only or full-resource".into(),
                "Subscription.channel.payload",
            ));
        }
    };
    let headers = read_headers(channel, previous)?;
    let end = match resource["end"].as_str() {
        None => None,
        Some(text) => Some(
            medmesh_fhir::datetime::parse_rfc3339_micros(text)
                .ok_or(("end is not an instant".into(), "Subscription.end"))?,
        ),
    };
    let heartbeat_seconds = match extension(channel, "backport-heartbeat-period")
        .find_map(|e| e["valueUnsignedInt"].as_u64())
    {
        None => None,
        Some(s) if (MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&s) => Some(s),
        Some(_) => {
            return Err((
                format!(
                    "a heartbeat period is between {MIN_HEARTBEAT} and {MAX_HEARTBEAT} seconds"
                ),
                "Subscription.channel",
            ));
        }
    };
    let mut kept = resource.clone();
    if let Some(o) = kept.as_object_mut() {
        o.remove("meta");
        o.remove("text");
        o.remove("error");
    }
    Ok(Spec {
        topic,
        filters,
        endpoint,
        headers,
        mime,
        content,
        end,
        heartbeat_seconds,
        scopes: Vec::new(),
        patient: None,
        resource: kept,
    })
}

fn read_headers(
    channel: &Value,
    previous: Option<&Spec>,
) -> Result<Vec<String>, (String, &'static str)> {
    let bad = |why: &str| (why.to_string(), "Subscription.channel.header");
    let mut headers = Vec::new();
    for h in channel["header"].as_array().into_iter().flatten() {
        let text = h.as_str().ok_or_else(|| bad("a header is text"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad("a header is \"Name: value\""))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || text.len() > MAX_HEADER_LEN
            || value.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            return Err(bad("a header is \"Name: value\", on one line"));
        }
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "content-type" | "content-length" | "host") {
            return Err(bad("that header is the node's to set"));
        }
        let value = value.trim();
        let value = if value == REDACTED {
            previous
                .and_then(|p| {
                    p.headers
                        .iter()
                        .filter_map(|h| h.split_once(':'))
                        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_string())
                })
                .ok_or_else(|| bad("a redacted header has no earlier value to keep"))?
        } else {
            value.to_string()
        };
        headers.push(format!("{name}: {value}"));
    }
    if headers.len() > MAX_HEADERS {
        return Err(bad("at most 10 headers"));
    }
    Ok(headers)
}

/// The Subscription as the node shows it to its owner: its id, its state, and its headers'
/// values redacted.
pub fn render(
    spec: &Spec,
    id: &str,
    status: &str,
    last_error: Option<&str>,
    updated: i64,
) -> Value {
    let mut r = spec.resource.clone();
    if let Some(o) = r.as_object_mut() {
        o.insert("id".into(), json!(id));
        o.insert("status".into(), json!(status));
        o.insert(
            "meta".into(),
            json!({
                "lastUpdated": medmesh_fhir::datetime::format_instant(updated),
                "profile": [format!("{BACKPORT}backport-subscription")],
            }),
        );
        if let Some(why) = last_error {
            o.insert("error".into(), json!(why));
        }
    }
    if !spec.headers.is_empty() {
        r["channel"]["header"] = json!(
            spec.headers
                .iter()
                .map(|h| match h.split_once(':') {
                    Some((n, _)) => format!("{n}: {REDACTED}"),
                    None => REDACTED.to_string(),
                })
                .collect::<Vec<_>>()
        );
    }
    r["channel"]["payload"] = json!(spec.mime);
    r["channel"]["_payload"] = json!({"extension": [{
        "url": format!("{BACKPORT}backport-payload-content"),
        "valueCode": spec.content.code(),
    }]});
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "appointments of one patient",
            "criteria": Topic::Appointment.canonical(),
            "_criteria": {"extension": [{
                "url": format!("{BACKPORT}backport-filter-criteria"),
                "valueString": "Appointment?patient=Patient/p1"}]},
            "channel": {
                "type": "rest-hook",
                "endpoint": "https://hooks.example.org/fhir",
                "payload": "application/fhir+json",
                "_payload": {"extension": [{
                    "url": format!("{BACKPORT}backport-payload-content"),
                    "valueCode": "full-resource"}]},
                "header": ["Authorization: Bearer s3cret"]
            }
        })
    }

    #[test]
    fn a_backport_subscription_is_read() {
        let spec = read_subscription(&sample(), None).unwrap();
        assert_eq!(spec.topic, Topic::Appointment);
        assert_eq!(spec.filters.len(), 1);
        assert_eq!(spec.content, Content::FullResource);
        assert_eq!(spec.headers, ["Authorization: Bearer s3cret"]);
    }

    #[test]
    fn headers_are_redacted_when_read_back_and_kept_when_written_back() {
        let spec = read_subscription(&sample(), None).unwrap();
        let shown = render(&spec, "s1", "active", None, 0);
        assert_eq!(shown["channel"]["header"][0], "Authorization: [redacted]");
        assert_eq!(shown["id"], "s1");
        let again = read_subscription(&shown, Some(&spec)).unwrap();
        assert_eq!(again.headers, spec.headers);
        assert!(read_subscription(&shown, None).is_err());
    }

    #[test]
    fn what_the_node_cannot_do_is_refused_with_its_place() {
        let mut s = sample();
        s["channel"]["type"] = json!("websocket");
        assert_eq!(
            read_subscription(&s, None).unwrap_err().1,
            "Subscription.channel.type"
        );
        let mut s = sample();
        s["criteria"] = json!("Observation?code=1234");
        assert_eq!(
            read_subscription(&s, None).unwrap_err().1,
            "Subscription.criteria"
        );
        let mut s = sample();
        s["channel"]["header"] = json!(["X: a\r\nInjected: b"]);
        assert!(read_subscription(&s, None).is_err());
        let mut s = sample();
        s["channel"]["header"] = json!(["Host: evil"]);
        assert!(read_subscription(&s, None).is_err());
        let mut s = sample();
        s["channel"]["extension"] =
            json!([{"url": format!("{BACKPORT}backport-heartbeat-period"), "valueUnsignedInt": 5}]);
        assert!(read_subscription(&s, None).is_err());
    }
}
