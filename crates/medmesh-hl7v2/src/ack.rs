//! Acknowledgements: MSH, MSA and ERR, in original mode (AA, AE, AR) and enhanced mode's
//! commit acknowledgements (CA, CE, CR).

use crate::encode::{FieldValue, MessageBuilder, SegmentBuilder};
use crate::message::{Delimiters, Message};

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept: processed.
    AA,
    /// Application error: the message was wrong; sending it again will not help.
    AE,
    /// Application reject: refused (unknown sender, unsupported type) or failed for a
    /// reason on this side; it may be sent again.
    AR,
    /// Commit accept (enhanced mode): stored durably.
    CA,
    /// Commit error.
    CE,
    /// Commit reject.
    CR,
}

impl AckCode {
    /// The code as written in MSA-1.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AA => "AA",
            Self::AE => "AE",
            Self::AR => "AR",
            Self::CA => "CA",
            Self::CE => "CE",
            Self::CR => "CR",
        }
    }

    /// Reads MSA-1.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AA" => Self::AA,
            "AE" => Self::AE,
            "AR" => Self::AR,
            "CA" => Self::CA,
            "CE" => Self::CE,
            "CR" => Self::CR,
            _ => return None,
        })
    }
}

/// When an acknowledgement is wanted (HL7 table 0155, in MSH-15 and MSH-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    /// `AL`: always.
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: only when the message failed or was refused.
    OnError,
    /// `SU`: only when it succeeded.
    OnSuccess,
}

impl AckCondition {
    /// Reads MSH-15 or MSH-16; an empty or unknown value is `AL`, so a sender that asked
    /// for enhanced mode but left one field out still hears what happened.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "NE" => Self::Never,
            "ER" => Self::OnError,
            "SU" => Self::OnSuccess,
            _ => Self::Always,
        }
    }

    /// Whether an acknowledgement is sent for an outcome that `succeeded` or not.
    pub fn wants(self, succeeded: bool) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::OnError => !succeeded,
            Self::OnSuccess => succeeded,
        }
    }
}

/// How a message asks to be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 both empty: one acknowledgement (AA, AE or AR) on the connection,
    /// once the message was processed.
    Original,
    /// Either valued: a commit acknowledgement (CA, CE or CR) on the connection once the
    /// message is stored, when `accept` wants one; then an application acknowledgement (AA,
    /// AE or AR) sent to the sender as a message of its own, when `application` wants one.
    Enhanced {
        /// MSH-15, accept acknowledgement type.
        accept: AckCondition,
        /// MSH-16, application acknowledgement type.
        application: AckCondition,
    },
}

impl AckMode {
    /// The mode `message` asks for.
    pub fn of(message: &Message) -> Self {
        let accept = message.msh().field(15).value();
        let application = message.msh().field(16).value();
        if accept.trim().is_empty() && application.trim().is_empty() {
            Self::Original
        } else {
            Self::Enhanced {
                accept: AckCondition::parse(&accept),
                application: AckCondition::parse(&application),
            }
        }
    }
}

/// Where an error is (ERR-2): a segment, its occurrence, a field and a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// Segment name.
    pub segment: String,
    /// Its occurrence among segments of that name, from 1.
    pub sequence: usize,
    /// The field, when one is at fault.
    pub field: Option<usize>,
    /// The component, when one is at fault.
    pub component: Option<usize>,
}

/// One ERR segment: HL7 table 0357's code, severity and a message that names no value
/// from the message (ERR-8 goes back to the sender's logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// Where, when known.
    pub location: Option<ErrorLocation>,
    /// Table 0357: 100 segment sequence, 101 required field missing, 102 data type,
    /// 103 table value not found, 200 unsupported message type, 201 unsupported event,
    /// 202 unsupported processing id, 203 unsupported version, 204 unknown key, 205
    /// duplicate key, 206 record locked, 207 application internal error.
    pub code: u16,
    /// ERR-4: `E` error, `W` warning, `I` information.
    pub severity: char,
    /// What was wrong.
    pub message: String,
}

impl AckError {
    /// An error (severity E).
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            location: None,
            code,
            severity: 'E',
            message: message.into(),
        }
    }

    /// The same, located.
    pub fn at(mut self, segment: &str, sequence: usize, field: Option<usize>) -> Self {
        self.location = Some(ErrorLocation {
            segment: segment.to_string(),
            sequence,
            field,
            component: None,
        });
        self
    }

    fn code_text(&self) -> &'static str {
        match self.code {
            0 => "Message accepted",
            100 => "Segment sequence error",
            101 => "Required field missing",
            102 => "Data type error",
            103 => "Table value not found",
            200 => "Unsupported message type",
            201 => "Unsupported event code",
            202 => "Unsupported processing id",
            203 => "Unsupported version id",
            204 => "Unknown key identifier",
            205 => "Duplicate key identifier",
            206 => "Application record locked",
            _ => "Application internal error",
        }
    }
}

/// Whether a version id is 2.5 or later (ERR's layout changed there).
fn at_least_2_5(version: &str) -> bool {
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 5)
}

/// The acknowledgement of `original` (or of bytes that did not parse, when `None`):
/// sender and receiver swapped, `ACK^<trigger>^ACK`, the original's control id in MSA-2,
/// its processing id and version, and one ERR per error. `control_id` and `timestamp`
/// (`YYYYMMDDHHMMSS+ZZZZ`) come from the caller, whose clock and ids are injected.
pub fn acknowledge(
    original: Option<&Message>,
    code: AckCode,
    errors: &[AckError],
    control_id: &str,
    timestamp: &str,
) -> Message {
    build_ack(original, code, errors, control_id, timestamp, false)
}

/// An enhanced-mode application acknowledgement of `original`: as [`acknowledge`], sent as
/// a message of its own, so it asks for a commit acknowledgement (MSH-15 `AL`) and none
/// back of the application (MSH-16 `NE`), which tells the node it was received.
pub fn application_acknowledge(
    original: &Message,
    code: AckCode,
    errors: &[AckError],
    control_id: &str,
    timestamp: &str,
) -> Message {
    build_ack(Some(original), code, errors, control_id, timestamp, true)
}

fn build_ack(
    original: Option<&Message>,
    code: AckCode,
    errors: &[AckError],
    control_id: &str,
    timestamp: &str,
    as_message: bool,
) -> Message {
    let d = original.map_or_else(Delimiters::default, |m| *m.delimiters());
    let field = |n: usize| -> FieldValue {
        original.map_or_else(FieldValue::default, |m| {
            let f = m.msh().field(n).first();
            FieldValue(vec![
                (1..=f.component_count())
                    .map(|c| vec![f.text(c).into_owned()])
                    .collect(),
            ])
        })
    };
    let version = original
        .map(|m| m.version().into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "2.5.1".to_string());
    let trigger = original
        .map(|m| m.message_type().1.into_owned())
        .unwrap_or_default();
    let processing = original
        .map(|m| m.msh().field(11).value().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "P".to_string());
    let mut msh = SegmentBuilder::new("MSH")
        .set(3, field(5))
        .set(4, field(6))
        .set(5, field(3))
        .set(6, field(4))
        .text(7, timestamp)
        .components(9, ["ACK", trigger.as_str(), "ACK"])
        .text(10, control_id)
        .text(11, processing)
        .text(12, version.clone());
    if as_message {
        msh = msh.text(15, "AL").text(16, "NE");
    }
    if let Some(m) = original {
        let charset = m.msh().field(18).value();
        if !charset.is_empty() {
            msh = msh.text(18, charset.into_owned());
        }
    }
    let original_id = original
        .map(|m| m.control_id().into_owned())
        .unwrap_or_default();
    let summary = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    let mut builder = MessageBuilder::new(d).segment(msh).segment(
        SegmentBuilder::new("MSA")
            .text(1, code.as_str())
            .text(2, original_id)
            .text(3, truncate(&summary, 80)),
    );
    let modern = at_least_2_5(&version);
    for e in errors {
        let loc = e.location.as_ref();
        let loc_parts = loc.map(|l| {
            vec![
                l.segment.clone(),
                l.sequence.to_string(),
                l.field.map(|f| f.to_string()).unwrap_or_default(),
                String::new(),
                l.component.map(|c| c.to_string()).unwrap_or_default(),
            ]
        });
        let seg = if modern {
            let mut s = SegmentBuilder::new("ERR");
            if let Some(parts) = loc_parts {
                s = s.components(2, parts);
            }
            s.components(
                3,
                [
                    e.code.to_string(),
                    e.code_text().to_string(),
                    "HL70357".into(),
                ],
            )
            .text(4, e.severity.to_string())
            .text(8, e.message.clone())
        } else {
            // ERR-1 (ELD): segment^sequence^field^code&text&table.
            let mut parts: Vec<Vec<String>> = loc_parts
                .unwrap_or_else(|| vec![String::new(); 3])
                .into_iter()
                .take(3)
                .map(|p| vec![p])
                .collect();
            parts.push(vec![
                e.code.to_string(),
                format!("{}: {}", e.code_text(), e.message),
                "HL70357".into(),
            ]);
            SegmentBuilder::new("ERR").set(1, FieldValue(vec![parts]))
        };
        builder = builder.segment(seg);
    }
    builder.build()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\rPID|1||123\r";

    #[test]
    fn the_mode_follows_msh_15_and_16() {
        let original = Message::parse_str(ORU).unwrap();
        assert_eq!(AckMode::of(&original), AckMode::Original);
        let enhanced = Message::parse_str(
            "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01|M1|P|2.5.1|||AL|ER\r",
        )
        .unwrap();
        assert_eq!(
            AckMode::of(&enhanced),
            AckMode::Enhanced {
                accept: AckCondition::Always,
                application: AckCondition::OnError
            }
        );
        let only_application = Message::parse_str(
            "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01|M1|P|2.5.1||||su\r",
        )
        .unwrap();
        assert_eq!(
            AckMode::of(&only_application),
            AckMode::Enhanced {
                accept: AckCondition::Always,
                application: AckCondition::OnSuccess
            }
        );
        assert!(AckCondition::OnError.wants(false) && !AckCondition::OnError.wants(true));
        assert!(AckCondition::OnSuccess.wants(true) && !AckCondition::OnSuccess.wants(false));
        assert!(!AckCondition::Never.wants(true) && !AckCondition::Never.wants(false));
    }

    #[test]
    fn an_application_ack_asks_only_for_a_commit() {
        let m = Message::parse_str(ORU).unwrap();
        let ack = application_acknowledge(&m, AckCode::AE, &[], "A2", "20240101120001+0000");
        assert_eq!(
            ack.encode(),
            "MSH|^~\\&|MEDMESH|NODE|LAB|HOSP|20240101120001+0000||ACK^R01^ACK|A2|P|2.5.1|||AL|NE\rMSA|AE|MSG00001\r"
        );
    }

    #[test]
    fn an_accept_swaps_sender_and_receiver() {
        let m = Message::parse_str(ORU).unwrap();
        let ack = acknowledge(Some(&m), AckCode::AA, &[], "A1", "20240101120001+0000");
        assert_eq!(
            ack.encode(),
            "MSH|^~\\&|MEDMESH|NODE|LAB|HOSP|20240101120001+0000||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|MSG00001\r"
        );
    }

    #[test]
    fn an_error_carries_err_in_the_versions_layout() {
        let m = Message::parse_str(ORU).unwrap();
        let e = AckError::new(101, "PID-3 holds no identifier").at("PID", 1, Some(3));
        let ack = acknowledge(
            Some(&m),
            AckCode::AE,
            std::slice::from_ref(&e),
            "A2",
            "2024",
        );
        let err = ack.segment("ERR").unwrap();
        assert_eq!(err.field(2).raw(), "PID^1^3");
        assert_eq!(err.get(3, 1), "101");
        assert_eq!(err.get(8, 1), "PID-3 holds no identifier");
        assert_eq!(
            ack.segment("MSA").unwrap().get(3, 1),
            "PID-3 holds no identifier"
        );

        let old = Message::parse_str(&ORU.replace("2.5.1", "2.3")).unwrap();
        let ack = acknowledge(Some(&old), AckCode::AE, &[e], "A3", "2024");
        let err = ack.segment("ERR").unwrap();
        assert_eq!(err.get(1, 1), "PID");
        assert_eq!(err.field(1).first().sub(4, 1), "101");
    }

    #[test]
    fn bytes_that_did_not_parse_get_a_reject() {
        let ack = acknowledge(
            None,
            AckCode::AR,
            &[AckError::new(100, "no MSH segment")],
            "A4",
            "2024",
        );
        let back = Message::parse_str(&ack.encode()).unwrap();
        assert_eq!(back.segment("MSA").unwrap().get(1, 1), "AR");
        assert_eq!(back.version(), "2.5.1");
    }
}
