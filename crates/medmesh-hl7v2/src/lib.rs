//! HL7 v2 messages, as hospitals send them: a tolerant parser, an encoder and
//! acknowledgements. No I/O: the MLLP adapter and the interface engine sit above it.
//!
//! What "tolerant" means here, each from a sender seen in the field:
//! - delimiters are read from MSH-1 and MSH-2, never assumed;
//! - segments may end in CR, LF or CRLF; blank lines, NUL bytes, a UTF-8 byte-order mark and
//!   trailing bytes that are not a segment (an MLLP trailer, an EOF character) are skipped;
//! - the bytes are decoded by MSH-18 (ASCII, ISO 8859 parts, UTF-8, the CJK sets), and
//!   undeclared bytes that are not UTF-8 as Windows-1252, the commonest undeclared set;
//! - segments and fields this parser does not know (Z-segments, later versions' additions)
//!   are kept and can be read like any other.
//!
//! Values are split lazily: a parsed [`Message`] keeps each segment's text and the bounds of
//! its fields; repetitions, components and sub-components are cut when asked for, and escape
//! sequences are decoded then ([`escape::decode`]).

pub mod ack;
pub mod batch;
pub mod charset;
pub mod encode;
pub mod escape;
pub mod message;

pub use ack::{
    AckCode, AckCondition, AckError, AckMode, ErrorLocation, acknowledge, application_acknowledge,
};
pub use batch::{Batch, split_messages};
pub use message::{Delimiters, Field, Message, ParseError, Repetition, Segment};
