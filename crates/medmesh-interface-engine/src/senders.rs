//! Senders: who may send, from where, with which credentials, and how their messages map.

use std::net::IpAddr;

use ipnet::IpNet;
use medmesh_auth::parse_scopes;
use medmesh_hl7v2::Message;
use medmesh_hl7v2_fhir::Profile;
use medmesh_kernel::Actor;
use medmesh_store::{Hl7SenderRow, StoreError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A sender's scopes: create, read, update and search on the types the mapping writes;
/// create and read on Binary (the document vault keeps the documents messages carry as
/// Binaries); when its merges move references, read and update on every type (a merged
/// patient's record may hold any); nothing else.
fn sender_scopes(profile: &Profile) -> Vec<medmesh_auth::Scope> {
    let mut text: Vec<String> = medmesh_hl7v2_fhir::WRITTEN_TYPES
        .iter()
        .map(|t| format!("system/{t}.cruds"))
        .collect();
    text.push("system/Binary.cr".into());
    if profile.merge_moves_references {
        text.push("system/*.rus".into());
    }
    parse_scopes(&text.join(" "))
}

/// How a message arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Over MLLP from this address.
    Mllp {
        /// The peer.
        peer: IpAddr,
    },
    /// Over HTTP, with the credentials given (sender name and secret).
    Http {
        /// The peer.
        peer: Option<IpAddr>,
        /// Basic credentials, when sent.
        credentials: Option<(String, String)>,
    },
    /// Replayed from the store by the node itself.
    Replay,
}

impl Via {
    /// The source address, when there is one.
    pub fn peer(&self) -> Option<IpAddr> {
        match self {
            Via::Mllp { peer } => Some(*peer),
            Via::Http { peer, .. } => *peer,
            Via::Replay => None,
        }
    }
}

/// Why a sender's configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// A setting is wrong; the text names it.
    #[error("sender {name}: {why}")]
    Invalid {
        /// The sender.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// A configured sender.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Its name.
    pub name: String,
    /// MSH-3 (`*` for any).
    pub application: String,
    /// MSH-4 (`*` for any).
    pub facility: String,
    /// The networks it may send from over MLLP (and over HTTP, when it has no secret).
    pub networks: Vec<IpNet>,
    /// SHA-256 of its HTTP secret.
    pub secret_hash: Option<[u8; 32]>,
    /// How its messages map.
    pub profile: Profile,
    /// Where its enhanced-mode application acknowledgements are delivered (`host:port`,
    /// MLLP); without one it receives commit acknowledgements only.
    pub ack_destination: Option<String>,
    /// Whether MSH-15 and MSH-16 are followed (enhanced mode). Off, every message is
    /// answered in original mode (AA, AE or AR on the connection) whatever they say: many
    /// senders fill them from a template and wait for that answer all the same (Mirth's
    /// listener ignores MSH-15 by default for this reason). On by default for a sender with
    /// an acknowledgement destination.
    pub enhanced: bool,
}

impl Sender {
    /// Builds a sender from its settings.
    ///
    /// # Errors
    /// [`SenderError::Invalid`] naming the setting.
    pub fn new(
        name: &str,
        application: &str,
        facility: &str,
        addresses: &str,
        secret_hash: Option<&str>,
        profile: Profile,
    ) -> Result<Self, SenderError> {
        let invalid = |why: String| SenderError::Invalid {
            name: name.to_string(),
            why,
        };
        if name.trim().is_empty() || name.len() > 64 || name == "unknown" {
            return Err(invalid(
                "a name of 1 to 64 characters, not 'unknown', is needed".into(),
            ));
        }
        let networks = parse_networks(addresses).map_err(invalid)?;
        let secret_hash = match secret_hash {
            Some(h) => {
                let bytes = hex::decode(h)
                    .map_err(|_| invalid("secret_hash must be hex SHA-256".into()))?;
                Some(
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| invalid("secret_hash must be hex SHA-256".into()))?,
                )
            }
            None => None,
        };
        if networks.is_empty() && secret_hash.is_none() {
            return Err(invalid(
                "give addresses it may send from, or an HTTP secret, or both".into(),
            ));
        }
        let profile = profile.completed_for(name);
        profile.validate().map_err(invalid)?;
        Ok(Self {
            name: name.to_string(),
            application: if application.trim().is_empty() {
                "*".into()
            } else {
                application.trim().to_string()
            },
            facility: if facility.trim().is_empty() {
                "*".into()
            } else {
                facility.trim().to_string()
            },
            networks,
            secret_hash,
            profile,
            ack_destination: None,
            enhanced: false,
        })
    }

    /// How a message from this sender is acknowledged: as it asks when the sender is in
    /// enhanced mode, else in original mode.
    pub fn ack_mode(&self, message: &Message) -> medmesh_hl7v2::AckMode {
        if self.enhanced {
            medmesh_hl7v2::AckMode::of(message)
        } else {
            medmesh_hl7v2::AckMode::Original
        }
    }

    /// Sets whether MSH-15 and MSH-16 are followed: `original` or `enhanced`; `None` keeps
    /// the default (enhanced when it has an acknowledgement destination).
    ///
    /// # Errors
    /// [`SenderError::Invalid`] for another word.
    pub fn with_acknowledgement(mut self, mode: Option<&str>) -> Result<Self, SenderError> {
        match mode.map(str::trim) {
            None | Some("") => {}
            Some("original") => self.enhanced = false,
            Some("enhanced") => self.enhanced = true,
            Some(_) => {
                return Err(SenderError::Invalid {
                    name: self.name.clone(),
                    why: "acknowledgement must be 'original' or 'enhanced'".into(),
                });
            }
        }
        Ok(self)
    }

    /// Sets where its application acknowledgements go (`host:port`).
    ///
    /// # Errors
    /// [`SenderError::Invalid`] when it is not `host:port`.
    pub fn with_ack_destination(mut self, destination: Option<&str>) -> Result<Self, SenderError> {
        self.ack_destination = match destination.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => {
                let port_ok = d.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !port_ok {
                    return Err(SenderError::Invalid {
                        name: self.name.clone(),
                        why: "ack_destination must be host:port".into(),
                    });
                }
                Some(d.to_string())
            }
        };
        self.enhanced = self.ack_destination.is_some();
        Ok(self)
    }

    /// The name of the queue its application acknowledgements wait in.
    pub fn ack_channel(&self) -> String {
        format!("ack:{}", self.name)
    }

    /// A sender stored with the CLI.
    ///
    /// # Errors
    /// As [`Sender::new`]; also for a profile that is not valid TOML.
    pub fn from_row(row: &Hl7SenderRow) -> Result<Self, SenderError> {
        let profile: Profile = if row.profile.trim().is_empty() {
            Profile::for_sender(&row.name)
        } else {
            toml::from_str(&row.profile).map_err(|e| SenderError::Invalid {
                name: row.name.clone(),
                why: format!("profile: {}", e.message()),
            })?
        };
        Self::new(
            &row.name,
            &row.application,
            &row.facility,
            &row.addresses,
            row.secret_hash.as_deref(),
            profile,
        )?
        .with_ack_destination(row.ack_destination.as_deref())
    }

    /// The actor its messages are written as.
    pub fn actor(&self) -> Actor {
        #[allow(clippy::disallowed_methods)] // The sender was recognised by `recognise`.
        Actor::from_verified_sender(&self.name, sender_scopes(&self.profile))
    }

    fn matches_header(&self, m: &Message) -> bool {
        let app = m.sending_application();
        let fac = m.sending_facility();
        (self.application == "*" || self.application.eq_ignore_ascii_case(app.trim()))
            && (self.facility == "*" || self.facility.eq_ignore_ascii_case(fac.trim()))
    }

    fn allows_address(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|n| n.contains(&peer))
    }

    fn secret_matches(&self, secret: &str) -> bool {
        let Some(want) = &self.secret_hash else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        bool::from(got.ct_eq(want))
    }
}

/// `127.0.0.1, 10.0.0.0/8, ::1` as networks.
fn parse_networks(addresses: &str) -> Result<Vec<IpNet>, String> {
    addresses
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<IpNet>()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{a}' is not an address or a network"))
        })
        .collect()
}

/// SHA-256 of a secret, hex: what is stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The sender a message comes from: its header must match, and over MLLP its address be
/// allowed; over HTTP its credentials must be its own (or, without a secret, its address
/// allowed).
pub(crate) fn recognise<'a>(senders: &'a [Sender], m: &Message, via: &Via) -> Option<&'a Sender> {
    senders.iter().find(|s| {
        s.matches_header(m)
            && match via {
                Via::Mllp { peer } => s.allows_address(*peer),
                Via::Http { peer, credentials } => match credentials {
                    Some((name, secret)) => *name == s.name && s.secret_matches(secret),
                    None => s.secret_hash.is_none() && peer.is_some_and(|p| s.allows_address(p)),
                },
                Via::Replay => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(app: &str, fac: &str) -> Message {
        Message::parse_str(&format!("MSH|^~\\&|{app}|{fac}|||2024||ADT^A01|1|P|2.5")).unwrap()
    }

    #[test]
    fn a_sender_is_recognised_by_header_and_address_or_secret() {
        let lab = Sender::new(
            "lab",
            "LAB",
            "*",
            "10.0.0.0/8, 127.0.0.1",
            Some(&hash_secret("s3cret")),
            Profile::default(),
        )
        .unwrap();
        let adt = Sender::new("adt", "*", "HOSP", "192.168.1.5", None, Profile::default()).unwrap();
        let all = vec![lab, adt];
        let local = Via::Mllp {
            peer: "127.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            recognise(&all, &msg("LAB", "X"), &local).unwrap().name,
            "lab"
        );
        assert_eq!(
            recognise(
                &all,
                &msg("lab", "X"),
                &Via::Mllp {
                    peer: "10.1.2.3".parse().unwrap()
                }
            )
            .unwrap()
            .name,
            "lab"
        );
        assert!(
            recognise(
                &all,
                &msg("LAB", "X"),
                &Via::Mllp {
                    peer: "11.0.0.1".parse().unwrap()
                }
            )
            .is_none()
        );
        assert!(recognise(&all, &msg("OTHER", "X"), &local).is_none());
        assert_eq!(
            recognise(
                &all,
                &msg("ANY", "HOSP"),
                &Via::Mllp {
                    peer: "::ffff:192.168.1.5".parse().unwrap()
                }
            )
            .unwrap()
            .name,
            "adt"
        );
        let http = |secret: &str| Via::Http {
            peer: None,
            credentials: Some(("lab".into(), secret.into())),
        };
        assert_eq!(
            recognise(&all, &msg("LAB", "X"), &http("s3cret"))
                .unwrap()
                .name,
            "lab"
        );
        assert!(recognise(&all, &msg("LAB", "X"), &http("wrong")).is_none());
        assert!(
            recognise(
                &all,
                &msg("LAB", "X"),
                &Via::Http {
                    peer: Some("127.0.0.1".parse().unwrap()),
                    credentials: None
                }
            )
            .is_none()
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Sender::new("x", "*", "*", "not-an-address", None, Profile::default()).unwrap_err();
        assert!(e.to_string().contains("'not-an-address' is not an address"));
        assert!(Sender::new("x", "*", "*", "", None, Profile::default()).is_err());
        assert!(Sender::new("unknown", "*", "*", "127.0.0.1", None, Profile::default()).is_err());
    }
}
