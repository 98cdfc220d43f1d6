//! Batches (FHS, BHS ... BTS, FTS) and files holding several messages one after another.

use crate::charset;
use crate::message::{Delimiters, Message, ParseError, Segment, group_segments, lines};

/// A batch: its file and batch headers, when sent, and its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// FHS, when the batch came in a file envelope.
    pub file_header: Option<Segment>,
    /// BHS, when sent.
    pub batch_header: Option<Segment>,
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// BTS-1, the count the sender says it sent, when given.
    pub declared_count: Option<usize>,
    /// What was tolerated, in words that name no value.
    pub warnings: Vec<String>,
}

impl Batch {
    /// Parses a batch, or any run of messages one after another (with or without FHS/BHS).
    ///
    /// # Errors
    /// When no message header can be read, or a header's delimiters are unreadable.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let (text, mut warnings) = charset::decode_message(bytes)?;
        let start = ["FHS", "BHS", "MSH"]
            .iter()
            .filter_map(|h| text.find(h))
            .min()
            .ok_or_else(|| ParseError::message("no FHS, BHS or MSH segment"))?;
        let body = &text[start..];
        let first_line = body.split(['\r', '\n']).next().unwrap_or(body);
        let d = Delimiters::from_header(first_line)?;
        let grouped = group_segments(lines(body).collect(), &d, &mut warnings);
        let mut batch = Batch {
            file_header: None,
            batch_header: None,
            messages: Vec::new(),
            declared_count: None,
            warnings,
        };
        let mut current: Vec<String> = Vec::new();
        let mut current_d = d;
        let flush = |current: &mut Vec<String>, cd: Delimiters, out: &mut Vec<Message>| {
            if !current.is_empty() {
                out.push(Message::from_lines(std::mem::take(current), cd, Vec::new()));
            }
        };
        for line in grouped {
            match line.get(..3).unwrap_or("") {
                "FHS" => batch.file_header = Some(Segment::new(line, d)),
                "BHS" => batch.batch_header = Some(Segment::new(line, d)),
                "BTS" => {
                    flush(&mut current, current_d, &mut batch.messages);
                    let bts = Segment::new(line, d);
                    batch.declared_count = bts.field(1).value().trim().parse().ok();
                }
                "FTS" => flush(&mut current, current_d, &mut batch.messages),
                "MSH" => {
                    flush(&mut current, current_d, &mut batch.messages);
                    // Each message may declare its own delimiters.
                    current_d = Delimiters::from_header(&line)?;
                    current.push(line);
                }
                _ if current.is_empty() => {
                    batch
                        .warnings
                        .push("skipped a segment outside any message".into());
                }
                _ => current.push(line),
            }
        }
        flush(&mut current, current_d, &mut batch.messages);
        if batch.messages.is_empty() && batch.declared_count != Some(0) {
            return Err(ParseError::message("the batch holds no message"));
        }
        if let Some(n) = batch.declared_count
            && n != batch.messages.len()
        {
            batch.warnings.push(format!(
                "BTS-1 says {n} messages; {} were read",
                batch.messages.len()
            ));
        }
        Ok(batch)
    }
}

/// The messages of a file or a frame that holds one or more messages (a batch or not).
///
/// # Errors
/// As [`Batch::parse`].
pub fn split_messages(bytes: &[u8]) -> Result<Vec<Message>, ParseError> {
    Ok(Batch::parse(bytes)?.messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_with_envelopes_and_a_count() {
        let text = "FHS|^~\\&|LAB|H|||20240101\rBHS|^~\\&|LAB|H\rMSH|^~\\&|LAB|H|||2024||ORU^R01|1|P|2.5\rPID|1||1\rMSH|^~\\&|LAB|H|||2024||ORU^R01|2|P|2.5\rPID|1||2\rBTS|2\rFTS|1\r";
        let b = Batch::parse(text.as_bytes()).unwrap();
        assert!(b.file_header.is_some() && b.batch_header.is_some());
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[1].control_id(), "2");
        assert_eq!(b.declared_count, Some(2));
        assert!(b.warnings.is_empty());
    }

    #[test]
    fn messages_one_after_another_and_a_wrong_count() {
        let text = "MSH|^~\\&|A|B|||2024||ADT^A01|1|P|2.3\nPID|1\n\nMSH|^~\\&|A|B|||2024||ADT^A08|2|P|2.3\nPID|1\nBTS|3";
        let b = Batch::parse(text.as_bytes()).unwrap();
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.warnings.len(), 1);
    }

    #[test]
    fn an_empty_batch_is_refused_unless_declared_empty() {
        assert!(
            Batch::parse(b"BHS|^~\\&|A\rBTS|0\r")
                .unwrap()
                .messages
                .is_empty()
        );
        assert!(Batch::parse(b"BHS|^~\\&|A\rBTS|\r").is_err());
    }
}
