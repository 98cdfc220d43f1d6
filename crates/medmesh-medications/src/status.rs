//! `MedicationRequest.status` and `.intent`, as R4 defines them, and which changes of status
//! a prescription may go through.
//!
//! A prescription is written as `draft`, becomes `active` when it is signed, may be put
//! `on-hold` and resumed, and ends `completed` (all given), `stopped` (ended after some was
//! taken) or `cancelled` (ended before any was dispensed). `entered-in-error` withdraws a
//! record made by mistake, from any status. Nothing leaves an ending status.

use std::fmt;

/// `MedicationRequest.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Being written; not yet in force.
    Draft,
    /// In force (signed).
    Active,
    /// Paused; may be resumed.
    OnHold,
    /// Ended before any of it was dispensed.
    Cancelled,
    /// Everything it asked for was done.
    Completed,
    /// Ended after some of it was taken.
    Stopped,
    /// Recorded by mistake.
    EnteredInError,
    /// Not known (from another system); never written here.
    Unknown,
}

impl RequestStatus {
    /// Every status.
    pub const ALL: [Self; 8] = [
        Self::Draft,
        Self::Active,
        Self::OnHold,
        Self::Cancelled,
        Self::Completed,
        Self::Stopped,
        Self::EnteredInError,
        Self::Unknown,
    ];

    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::OnHold => "on-hold",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::Stopped => "stopped",
            Self::EnteredInError => "entered-in-error",
            Self::Unknown => "unknown",
        }
    }

    /// Reads a FHIR code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether nothing follows it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Cancelled | Self::Completed | Self::Stopped | Self::EnteredInError
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// `MedicationRequest.intent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// A suggestion, with no authority.
    Proposal,
    /// An intention, not yet an order.
    Plan,
    /// An order (a prescription).
    Order,
    /// The original order, as the prescriber wrote it.
    OriginalOrder,
    /// An order made automatically in answer to another.
    ReflexOrder,
    /// The order as the pharmacy (the filler) holds it.
    FillerOrder,
    /// One occurrence of an order (a single administration).
    InstanceOrder,
    /// One option of a set of alternatives.
    Option,
}

impl Intent {
    /// Every intent.
    pub const ALL: [Self; 8] = [
        Self::Proposal,
        Self::Plan,
        Self::Order,
        Self::OriginalOrder,
        Self::ReflexOrder,
        Self::FillerOrder,
        Self::InstanceOrder,
        Self::Option,
    ];

    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Proposal => "proposal",
            Self::Plan => "plan",
            Self::Order => "order",
            Self::OriginalOrder => "original-order",
            Self::ReflexOrder => "reflex-order",
            Self::FillerOrder => "filler-order",
            Self::InstanceOrder => "instance-order",
            Self::Option => "option",
        }
    }

    /// Reads a FHIR code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.code() == code)
    }

    /// Whether it carries a prescriber's authority: only such a request is signed and
    /// may be dispensed (a proposal or a plan may not).
    pub fn is_prescription(self) -> bool {
        matches!(
            self,
            Self::Order | Self::OriginalOrder | Self::ReflexOrder | Self::FillerOrder
        )
    }
}

/// Why a change of status is refused, in words for the prescriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// Nothing follows an ending status.
    #[error("a {0} prescription cannot change any more")]
    Ended(RequestStatus),
    /// The change is not one R4's lifecycle has.
    #[error("a {from} prescription cannot become {to}")]
    NotAllowed {
        /// The status now.
        from: RequestStatus,
        /// The status asked for.
        to: RequestStatus,
    },
    /// Cancelled means none was dispensed; after a dispense it is stopped instead.
    #[error("some of it was dispensed: stop it instead of cancelling it")]
    AlreadyDispensed,
    /// Only a prescription (an order) is activated; a proposal or plan is not signed.
    #[error("a {0} is not a prescription and cannot be made active")]
    NotAPrescription(&'static str),
}

/// Checks a change of status from `from` to `to` of a request of `intent`, `dispensed`
/// saying whether any of it was dispensed yet. The same status again is no change (allowed).
///
/// # Errors
/// [`TransitionError`], saying why.
pub fn check_transition(
    intent: Intent,
    from: RequestStatus,
    to: RequestStatus,
    dispensed: bool,
) -> Result<(), TransitionError> {
    use RequestStatus as S;
    if from == to {
        return Ok(());
    }
    if from.is_final() {
        return Err(TransitionError::Ended(from));
    }
    let allowed = matches!(
        (from, to),
        (_, S::EnteredInError)
            | (S::Draft, S::Active | S::Cancelled)
            | (
                S::Active | S::OnHold,
                S::Completed | S::Cancelled | S::Stopped
            )
            | (S::Active, S::OnHold)
            | (S::OnHold, S::Active)
    );
    if !allowed {
        return Err(TransitionError::NotAllowed { from, to });
    }
    if to == S::Cancelled && dispensed {
        return Err(TransitionError::AlreadyDispensed);
    }
    if to == S::Active && !intent.is_prescription() {
        return Err(TransitionError::NotAPrescription(intent.code()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestStatus as S;

    #[test]
    fn codes_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.code()), Some(s));
        }
        for i in Intent::ALL {
            assert_eq!(Intent::parse(i.code()), Some(i));
        }
        assert_eq!(S::parse("suspended"), None);
    }

    #[test]
    fn the_lifecycle_allows_exactly_its_changes() {
        let allowed = [
            (S::Draft, S::Active),
            (S::Draft, S::Cancelled),
            (S::Draft, S::EnteredInError),
            (S::Active, S::OnHold),
            (S::Active, S::Completed),
            (S::Active, S::Cancelled),
            (S::Active, S::Stopped),
            (S::Active, S::EnteredInError),
            (S::OnHold, S::Active),
            (S::OnHold, S::Cancelled),
            (S::OnHold, S::Stopped),
            (S::OnHold, S::Completed),
            (S::OnHold, S::EnteredInError),
            (S::Unknown, S::EnteredInError),
        ];
        for from in S::ALL {
            for to in S::ALL {
                let ok = check_transition(Intent::Order, from, to, false).is_ok();
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(ok, expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            check_transition(Intent::Order, S::Completed, S::Active, false),
            Err(TransitionError::Ended(S::Completed))
        );
        assert_eq!(
            check_transition(Intent::Order, S::Active, S::Cancelled, true),
            Err(TransitionError::AlreadyDispensed)
        );
        assert_eq!(
            check_transition(Intent::Proposal, S::Draft, S::Active, false),
            Err(TransitionError::NotAPrescription("proposal"))
        );
        assert_eq!(
            check_transition(Intent::Order, S::Draft, S::Stopped, false)
                .unwrap_err()
                .to_string(),
            "a draft prescription cannot become stopped"
        );
    }
}
