//! Idempotency keys as clients send them, and the keys the store keeps.
//!
//! A client's key is never stored as it is. It is scoped to the caller (the
//! authenticated subject, or for an anonymous caller the address the server
//! vouches for) and digested: the store keeps `client:<hex>`, in a space of
//! its own, so no client key can reach a key the server makes for its own
//! processes (`earning:…`), another caller's key, or be read back from the
//! trail and replayed. The community scopes it too (the store's key is per
//! community). What the client asked (the operation and its arguments) is
//! the key's fingerprint: the same key with another operation or another
//! input is a conflict, never the first outcome.
//!
//! The rule for a valid key (`docs/IDEMPOTENCY.md`): 1 to 100 characters,
//! each a printable ASCII character other than space (`!` to `~`). Anything
//! else is refused with `VALIDATION`, never ignored.

use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// The longest key a client may send.
pub const CLIENT_KEY_BYTES_MAX: usize = 100;
/// Keys the store keeps for clients start with this; keys the server makes
/// for itself never do.
const CLIENT_KEY_PREFIX: &str = "client:";

/// A key as a client sent it, checked against the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    pub fn parse(bytes: &[u8]) -> AppResult<ClientKey> {
        let valid = !bytes.is_empty()
            && bytes.len() <= CLIENT_KEY_BYTES_MAX
            && bytes.iter().all(u8::is_ascii_graphic);
        if !valid {
            return Err(AppError::validation(
                "idempotency key",
                format!(
                    "1 to {CLIENT_KEY_BYTES_MAX} printable ASCII characters \
                 without spaces (! to ~)"
                ),
            ));
        }
        Ok(ClientKey(
            String::from_utf8(bytes.to_vec()).expect("ASCII is UTF-8"),
        ))
    }
}

/// The key the store records for a request, and what a repeat must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// The digest of what was asked: a client's operation and arguments,
    /// or for a key the server makes, the key itself.
    pub fingerprint: [u8; 32],
}

impl Idempotency {
    /// A key the server makes for one of its own processes. The key names
    /// one operation (an earning: its source and resident), so it is its
    /// own fingerprint: two processes that raced to carry it out, each
    /// deciding from what it had read, are one request, and the one that
    /// lost gets the first outcome instead of a refusal.
    pub fn server(key: String) -> Self {
        assert!(
            !key.starts_with(CLIENT_KEY_PREFIX),
            "server keys live apart from client keys"
        );
        let fingerprint = digest(&[b"civic-ledger server operation v1", key.as_bytes()]);
        Idempotency { key, fingerprint }
    }

    /// A client's key, scoped to `caller`, for `operation` asked with
    /// `arguments` (canonical bytes: the same request gives the same ones).
    pub fn client(caller: &str, key: &ClientKey, operation: &str, arguments: &[u8]) -> Self {
        let scoped = digest(&[
            b"civic-ledger client key v1",
            caller.as_bytes(),
            key.0.as_bytes(),
        ]);
        Idempotency {
            key: format!("{CLIENT_KEY_PREFIX}{}", hex::encode(scoped)),
            fingerprint: digest(&[b"civic-ledger request v1", operation.as_bytes(), arguments]),
        }
    }

    /// Whether a stored request fingerprint is this request's.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        self.fingerprint == *stored
    }
}

/// SHA-256 over length-prefixed parts, so no two lists of parts frame alike.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The refusal of a key used before for another request.
pub fn reused() -> AppError {
    AppError::conflict("the idempotency key was used for another request: send a new key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_for_client_keys() {
        let long = "k".repeat(CLIENT_KEY_BYTES_MAX);
        let too_long = "k".repeat(CLIENT_KEY_BYTES_MAX + 1);
        let cases: &[(&[u8], bool)] = &[
            (b"3f1c-retry-01", true),
            (b"!~", true),
            (long.as_bytes(), true),
            (b"", false),
            (too_long.as_bytes(), false),
            (b"with space", false),
            (b"tab\tkey", false),
            (b"nul\0key", false),
            ("重试-1".as_bytes(), false),
            (b"\xff\xfe", false),
        ];
        for (bytes, valid) in cases {
            assert_eq!(ClientKey::parse(bytes).is_ok(), *valid, "{bytes:?}");
        }
    }

    #[test]
    fn a_client_key_is_scoped_to_its_caller_and_never_reaches_a_server_key() {
        let key = ClientKey::parse(b"earning:report-accepted").unwrap();
        let mine = Idempotency::client("person:a", &key, "submitReport", b"{}");
        let theirs = Idempotency::client("person:b", &key, "submitReport", b"{}");
        assert_ne!(mine.key, theirs.key);
        assert!(mine.key.starts_with(CLIENT_KEY_PREFIX));
        assert!(!mine.key.contains("earning"));
        let other_operation = Idempotency::client("person:a", &key, "submitSuggestion", b"{}");
        assert_eq!(mine.key, other_operation.key, "one key, one outcome");
        assert!(!mine.matches(&other_operation.fingerprint));
        assert!(mine.matches(&mine.fingerprint));
    }
}
