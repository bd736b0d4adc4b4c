//! What every area of the schema shares: names of enums as the log
//! spells them, cursors, months, the caller's claims, and the answer of a
//! mutation that writes.

use crate::error::{ApiError, ApiResult};
use app::caller::{Claims, Viewer};
pub use app::reports::{is_report_staff, sees_reporter};
use async_graphql::{SimpleObject, ID};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The read model's name of a schema enum value, e.g. `in_progress`.
pub fn name_of<T: Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Parses a read model's state name into a schema enum.
pub(crate) fn from_name<T: for<'de> Deserialize<'de>>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

pub fn claims_of(viewer: &Viewer) -> Option<&Claims> {
    match viewer {
        Viewer::Member(claims) => Some(claims),
        _ => None,
    }
}

/// What a mutation that creates or changes something returns.
#[derive(SimpleObject)]
pub struct Written {
    /// The id of what was created or changed.
    pub id: ID,
    pub position: i64,
}

/// The answer of a mutation that wrote at `position` about `id`.
pub(crate) fn written(id: Uuid, position: i64) -> Written {
    Written {
        id: ID(id.to_string()),
        position,
    }
}

pub(crate) fn encode_cursor(at: i64, id: Uuid) -> String {
    format!("{at}:{id}")
}

pub(crate) fn decode_cursor(cursor: &str) -> ApiResult<(i64, Uuid)> {
    let parsed = cursor
        .split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, Uuid::parse_str(id).ok()?)));
    parsed.ok_or_else(|| ApiError::validation("after: not a cursor this list gave"))
}

/// Staff roles that see every report, hidden ones included.
pub(crate) fn sees_hidden(claims: &Claims) -> bool {
    is_report_staff(Some(claims))
}

pub(crate) fn parse_month(month: &str) -> ApiResult<()> {
    let valid = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && month[..4].parse::<u16>().is_ok()
        && month[5..]
            .parse::<u8>()
            .is_ok_and(|m| (1..=12).contains(&m));
    if valid {
        Ok(())
    } else {
        Err(ApiError::validation("month: YYYY-MM"))
    }
}
