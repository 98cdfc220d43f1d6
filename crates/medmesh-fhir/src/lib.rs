//! The FHIR R4 domain of medmesh: definitions, validation, search and the FHIRPath subset.
//!
//! Pure logic only: no I/O, no database, no HTTP. The official definitions are compiled into
//! the crate (see [`definitions`]).

pub mod datetime;
pub mod definitions;
pub mod fhirpath;
pub mod index;
pub mod json;
pub mod names;
pub mod outcome;
pub mod resource;
pub mod search;
pub mod validate;

pub use definitions::{Definitions, SearchParamType, definitions};
pub use outcome::{Issue, IssueType, Severity, operation_outcome};
