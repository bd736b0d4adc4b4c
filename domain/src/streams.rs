//! Every stream's name and kind, in one place: commands name the streams
//! they load and append to with these functions, projections and the audit
//! tell events apart by `StreamKind`, benches write the same names. A stream
//! kind is the type the store records for each event, the aggregate's
//! `TYPE`.

use uuid::Uuid;

/// What kind of aggregate a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Community,
    Report,
    Suggestion,
    Patrol,
    Budget,
    Wallet,
    Gift,
    Redemption,
    Erasure,
}

impl StreamKind {
    pub const ALL: [StreamKind; 9] = [
        StreamKind::Community,
        StreamKind::Report,
        StreamKind::Suggestion,
        StreamKind::Patrol,
        StreamKind::Budget,
        StreamKind::Wallet,
        StreamKind::Gift,
        StreamKind::Redemption,
        StreamKind::Erasure,
    ];

    /// The stream type the store records.
    pub const fn name(self) -> &'static str {
        match self {
            StreamKind::Community => "Community",
            StreamKind::Report => "Report",
            StreamKind::Suggestion => "Suggestion",
            StreamKind::Patrol => "Patrol",
            StreamKind::Budget => "Budget",
            StreamKind::Wallet => "Wallet",
            StreamKind::Gift => "Gift",
            StreamKind::Redemption => "Redemption",
            StreamKind::Erasure => "Erasure",
        }
    }

    /// The kind a recorded stream type names; `None` for a type this code
    /// does not know (a newer writer's).
    pub fn of(stream_type: &str) -> Option<StreamKind> {
        StreamKind::ALL
            .into_iter()
            .find(|kind| kind.name() == stream_type)
    }
}

/// Each community has one stream for its set-up.
pub const COMMUNITY: &str = "community";
/// Each community has one issuing account.
pub const BUDGET: &str = "budget";

/// What every report's stream id starts with, before the report's id.
pub const REPORT_PREFIX: &str = "report-";

/// The stream recording that a piece of content was erased: one per
/// piece, named by its hash.
pub fn erasure(content: &str) -> String {
    format!("erasure-{content}")
}

pub fn report(report: Uuid) -> String {
    format!("{REPORT_PREFIX}{report}")
}
pub fn suggestion(suggestion: Uuid) -> String {
    format!("suggestion-{suggestion}")
}
pub fn patrol(patrol: Uuid) -> String {
    format!("patrol-{patrol}")
}
pub fn wallet(resident: Uuid) -> String {
    format!("wallet-{resident}")
}
pub fn gift(gift: Uuid) -> String {
    format!("gift-{gift}")
}
pub fn redemption(redemption: Uuid) -> String {
    format!("redemption-{redemption}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::Aggregate;

    #[test]
    fn each_kind_is_its_aggregates_type() {
        let types = [
            crate::community::Community::TYPE,
            crate::report::Report::TYPE,
            crate::suggestion::Suggestion::TYPE,
            crate::patrol::Patrol::TYPE,
            crate::points::budget::Budget::TYPE,
            crate::points::wallet::Wallet::TYPE,
            crate::points::gift::Gift::TYPE,
            crate::points::redemption::Redemption::TYPE,
        ];
        for (kind, name) in StreamKind::ALL.into_iter().zip(types) {
            assert_eq!(kind.name(), name);
            assert_eq!(StreamKind::of(name), Some(kind));
        }
        assert_eq!(StreamKind::of("Unknown"), None);
    }
}
