//! Values with rules: each parses instead of validating, so a value that
//! exists is a valid one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::error::DomainError;

/// The name a value serializes to, e.g. `in_progress` for a state.
pub fn serialized_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// A moment, in microseconds since 1970-01-01 UTC. An integer, so that it
/// travels exactly in event payloads; time always comes in with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn plus_hours(self, hours: u32) -> Self {
        Timestamp(self.0 + i64::from(hours) * Self::MICROS_PER_HOUR)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A pseudonymous person: a resident or a member of staff. Who is behind
    /// it lives in the erasable profile, never in the log.
    PersonId
);
id_type!(GridId);
id_type!(SiteId);
id_type!(DepartmentId);
id_type!(ReportId);
id_type!(SuggestionId);
id_type!(PatrolId);
id_type!(
    /// A community centre with a gift counter.
    CentreId
);
id_type!(GiftId);
id_type!(RedemptionId);
id_type!(
    /// A manual grant or a record of volunteer service.
    GrantId
);

/// An amount of points that moves: positive, at most two decimals, at most
/// `Points::MAX`. Balances are plain `Decimal`s (they may be zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "rust_decimal::Decimal", into = "rust_decimal::Decimal")]
pub struct Points(rust_decimal::Decimal);

impl Points {
    /// A billion points: far beyond any community's yearly budget, far
    /// below where sums of them could overflow.
    pub const MAX: rust_decimal::Decimal =
        rust_decimal::Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

    pub fn parse(amount: rust_decimal::Decimal) -> Result<Self, DomainError> {
        if amount <= rust_decimal::Decimal::ZERO || amount.scale() > 2 || amount > Self::MAX {
            return Err(DomainError::validation(
                "points",
                "more than 0, at most two decimals, at most a billion",
            ));
        }
        Ok(Points(amount.normalize()))
    }

    pub fn amount(self) -> rust_decimal::Decimal {
        self.0
    }
}

impl TryFrom<rust_decimal::Decimal> for Points {
    type Error = DomainError;
    fn try_from(amount: rust_decimal::Decimal) -> Result<Self, DomainError> {
        Points::parse(amount)
    }
}

impl From<Points> for rust_decimal::Decimal {
    fn from(points: Points) -> Self {
        points.0
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a short code: `min..=max` characters of `A-Z`, `0-9` and `-`.
fn parse_code(field: &str, text: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let code = text.trim().to_ascii_uppercase();
    if code.len() < min || code.len() > max {
        return Err(DomainError::validation(
            field,
            format!("{min} to {max} characters"),
        ));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(DomainError::validation(
            field,
            "only letters, digits and '-'",
        ));
    }
    Ok(code)
}

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, DomainError> {
                parse_code($field, text, $min, $max).map($name)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_type!(
    /// The short public code printed in a site's QR code, e.g. `RB-0042`.
    SiteCode,
    "site_code",
    3,
    16
);
code_type!(
    /// A category of problem, e.g. `FLOATING-GARBAGE`.
    CategoryCode,
    "category",
    2,
    32
);

/// The SHA-256 (64 lowercase hex digits) of content kept beside the log:
/// a report's text, a note, a comment. The content itself may be erased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DomainError::validation(
                "content_hash",
                "64 lowercase hex digits",
            ));
        }
        Ok(ContentHash(text.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ContentHash::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a resident types into a report, a note or a comment: 1 to 2,000
/// characters, no control characters but line breaks. It is stored beside
/// the log; events carry its [`ContentHash`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(String);

/// One line (a name, a code typed by hand) or several (a report's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// Characters that render as nothing: zero-width spaces and joiners, the
/// word joiner, the byte-order mark, the soft hyphen, the Mongolian vowel
/// separator.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

/// Bidirectional embeddings, overrides and isolates: they make a text
/// display in another order than it is stored ("Trojan source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The one rule for text people type, names and texts alike: refused when
/// it holds a control character (tab and newlines allowed in `Lines::Many`
/// only), a bidirectional override, or renders as nothing (only spaces and
/// invisible characters); otherwise trimmed of surrounding white space and
/// invisible characters, and at most `chars_max` characters.
pub fn plain_text(
    field: &str,
    text: &str,
    lines: Lines,
    chars_max: usize,
) -> Result<String, DomainError> {
    let allowed_control = |c: char| lines == Lines::Many && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err(DomainError::validation(
            field,
            "control characters are not allowed",
        ));
    }
    if text.chars().any(is_bidi_control) {
        return Err(DomainError::validation(
            field,
            "bidirectional override characters are not allowed",
        ));
    }
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || is_invisible(c));
    let chars = trimmed.chars().count();
    if chars == 0 || chars > chars_max {
        return Err(DomainError::validation(
            field,
            format!("1 to {chars_max} visible characters"),
        ));
    }
    Ok(trimmed.to_string())
}

impl Text {
    pub const CHARS_MAX: usize = 2_000;

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        plain_text("text", text, Lines::Many, Self::CHARS_MAX).map(Text)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A link to a photo: an `https` URL with a host, at most 500 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhotoUrl(String);

impl PhotoUrl {
    pub const CHARS_MAX: usize = 500;

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let url = text.trim();
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(DomainError::validation("photo", "must be an https URL"));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if url.len() > Self::CHARS_MAX
            || !host_ok
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(DomainError::validation("photo", "not a valid https URL"));
        }
        Ok(PhotoUrl(url.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PhotoUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PhotoUrl::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Up to nine photo links, as a report's form allows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Photos(Vec<PhotoUrl>);

impl Photos {
    pub const COUNT_MAX: usize = 9;

    pub fn parse(urls: &[&str]) -> Result<Self, DomainError> {
        if urls.len() > Self::COUNT_MAX {
            return Err(DomainError::validation(
                "photos",
                format!("at most {}", Self::COUNT_MAX),
            ));
        }
        urls.iter()
            .map(|u| PhotoUrl::parse(u))
            .collect::<Result<_, _>>()
            .map(Photos)
    }
    pub fn urls(&self) -> &[PhotoUrl] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Photos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let urls = Vec::<PhotoUrl>::deserialize(d)?;
        if urls.len() > Photos::COUNT_MAX {
            return Err(serde::de::Error::custom("too many photos"));
        }
        Ok(Photos(urls))
    }
}

/// The photo links of a report or a resolution, kept beside the log like
/// its text (a redaction must really remove them): the event carries the
/// hash of the stored list and how many links it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedPhotos {
    content: ContentHash,
    count: u8,
}

impl AttachedPhotos {
    pub fn new(content: ContentHash, photos: &Photos) -> Self {
        AttachedPhotos {
            content,
            // At most nine, as `Photos` guarantees.
            count: photos.urls().len() as u8,
        }
    }
    /// Photos of which some are links and some uploads: `count` of them
    /// in all, at most [`Photos::COUNT_MAX`].
    pub fn counted(content: ContentHash, count: usize) -> Result<Self, DomainError> {
        if count > Photos::COUNT_MAX {
            return Err(DomainError::validation(
                "photos",
                format!("at most {}", Photos::COUNT_MAX),
            ));
        }
        Ok(AttachedPhotos {
            content,
            count: count as u8,
        })
    }
    pub fn content(&self) -> &ContentHash {
        &self.content
    }
    pub fn count(&self) -> u8 {
        self.count
    }
}

impl<'de> Deserialize<'de> for AttachedPhotos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            content: ContentHash,
            count: u8,
        }
        let raw = Raw::deserialize(d)?;
        if usize::from(raw.count) > Photos::COUNT_MAX {
            return Err(serde::de::Error::custom("too many photos"));
        }
        Ok(AttachedPhotos {
            content: raw.content,
            count: raw.count,
        })
    }
}

/// A point on the map, in millionths of a degree (integers travel exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GeoPoint {
    latitude_e6: i32,
    longitude_e6: i32,
}

impl GeoPoint {
    pub fn parse(latitude_e6: i64, longitude_e6: i64) -> Result<Self, DomainError> {
        if !(-90_000_000..=90_000_000).contains(&latitude_e6) {
            return Err(DomainError::validation("latitude", "must be within ±90°"));
        }
        if !(-180_000_000..=180_000_000).contains(&longitude_e6) {
            return Err(DomainError::validation("longitude", "must be within ±180°"));
        }
        Ok(GeoPoint {
            latitude_e6: latitude_e6 as i32,
            longitude_e6: longitude_e6 as i32,
        })
    }
    pub fn latitude_e6(&self) -> i32 {
        self.latitude_e6
    }
    pub fn longitude_e6(&self) -> i32 {
        self.longitude_e6
    }
}

/// Who issues a command, as the API established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub person: PersonId,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Citizen,
    GridWorker,
    Department,
    Clerk,
    Admin,
    Auditor,
    /// Staff who check resolved reports on site.
    Inspector,
}

impl Role {
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Citizen | Role::Auditor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_refuse_what_their_rules_forbid() {
        let long_text = "河".repeat(Text::CHARS_MAX + 1);
        let too_many: Vec<&str> = vec!["https://img.example/a.jpg"; 10];
        let refused: Vec<(&str, Result<(), DomainError>)> = vec![
            ("empty text", Text::parse("  ").map(drop)),
            ("long text", Text::parse(&long_text).map(drop)),
            ("control text", Text::parse("a\u{7}b").map(drop)),
            (
                "http photo",
                PhotoUrl::parse("http://img.example/a.jpg").map(drop),
            ),
            ("no host", PhotoUrl::parse("https:///a.jpg").map(drop)),
            (
                "javascript",
                PhotoUrl::parse("javascript:alert(1)").map(drop),
            ),
            (
                "spaces",
                PhotoUrl::parse("https://img.example/a b.jpg").map(drop),
            ),
            ("ten photos", Photos::parse(&too_many).map(drop)),
            ("latitude 200", GeoPoint::parse(200_000_000, 0).map(drop)),
            ("longitude -181", GeoPoint::parse(0, -181_000_000).map(drop)),
            ("short code", SiteCode::parse("RB").map(drop)),
            ("code with space", SiteCode::parse("RB 42").map(drop)),
            ("hash", ContentHash::parse("ABC").map(drop)),
        ];
        for (what, result) in refused {
            let error = result.expect_err(what);
            assert_eq!(error.code(), "VALIDATION", "{what}");
        }
        assert_eq!(SiteCode::parse(" rb-0042 ").unwrap().as_str(), "RB-0042");
        assert_eq!(
            Text::parse("  河边有垃圾\n ").unwrap().as_str(),
            "河边有垃圾"
        );
        assert_eq!(
            Photos::parse(&["https://img.example/a.jpg"; 9])
                .unwrap()
                .urls()
                .len(),
            9
        );
        assert!(
            serde_json::from_str::<SiteCode>("\"x\"").is_err(),
            "parsing applies to JSON too"
        );
    }
}
