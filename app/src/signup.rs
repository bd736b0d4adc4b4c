//! Residents sign up from the QR page with a phone number and a display
//! name: a one-time code goes out through a pluggable sender; the right
//! code yields a token. The phone number lives only in the erasable
//! profile, found by a keyed hash.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use store::profiles::{CodeAttempt, CodeRequest, Resident};
use store::{CommunityId, EventStore};

use crate::error::{AppError, AppResult};

pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
const CODES_PER_HOUR_MAX: i64 = 5;
const ATTEMPTS_PER_CODE_MAX: i32 = 5;
const DISPLAY_NAME_CHARS_MAX: usize = 40;

/// Delivers a one-time code to a phone (an SMS gateway in production).
#[async_trait]
pub trait CodeSender: Send + Sync + 'static {
    async fn send(&self, phone: &str, code: &str) -> Result<(), String>;
}

/// The default sender: writes the code to the server's log, for set-ups
/// without an SMS gateway yet.
pub struct LogCodeSender;

#[async_trait]
impl CodeSender for LogCodeSender {
    async fn send(&self, phone: &str, code: &str) -> Result<(), String> {
        let shown = phone.len().saturating_sub(4);
        tracing::info!(phone = %format!("…{}", &phone[shown..]), %code, "sign-up code");
        Ok(())
    }
}

#[derive(Clone)]
pub struct Signup {
    store: EventStore,
    phone_key: Vec<u8>,
    sender: Arc<dyn CodeSender>,
}

impl Signup {
    pub fn new(store: EventStore, phone_key: Vec<u8>, sender: Arc<dyn CodeSender>) -> Self {
        Signup {
            store,
            phone_key,
            sender,
        }
    }

    /// The keyed hash a phone number is found by.
    fn phone_hash(&self, community: CommunityId, phone: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.phone_key).expect("any key length");
        mac.update(community.as_uuid().as_bytes());
        mac.update(phone.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub async fn request_code(
        &self,
        community: CommunityId,
        phone: &str,
        display_name: &str,
    ) -> AppResult<()> {
        let phone = parse_phone(phone)?;
        let display_name = parse_display_name(display_name)?;
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        self.store
            .issue_signup_code(CodeRequest {
                community_id: community,
                phone_hash: self.phone_hash(community, &phone),
                code_hash: code_hash(&code),
                display_name: &display_name,
                now: chrono::Utc::now(),
                lifetime: CODE_LIFETIME,
                codes_per_hour_max: CODES_PER_HOUR_MAX,
            })
            .await?;
        self.sender
            .send(&phone, &code)
            .await
            .map_err(|error| AppError::Unavailable(format!("the code was not sent: {error}")))
    }

    pub async fn verify_code(
        &self,
        community: CommunityId,
        phone: &str,
        code: &str,
    ) -> AppResult<Resident> {
        let phone = parse_phone(phone)?;
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::validation("code", "a code is 6 digits"));
        }
        Ok(self
            .store
            .verify_signup_code(CodeAttempt {
                community_id: community,
                phone_hash: self.phone_hash(community, &phone),
                code_hash: code_hash(code),
                phone: &phone,
                now: chrono::Utc::now(),
                attempts_max: ATTEMPTS_PER_CODE_MAX,
            })
            .await?)
    }
}

fn code_hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

/// E.164-like: an optional `+`, then 6 to 15 digits; spaces and dashes go.
pub fn parse_phone(phone: &str) -> AppResult<String> {
    let cleaned: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let digits = cleaned.strip_prefix('+').unwrap_or(&cleaned);
    if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::validation(
            "phone",
            "6 to 15 digits, optionally after +",
        ));
    }
    Ok(cleaned)
}

fn parse_display_name(name: &str) -> AppResult<String> {
    Ok(domain::values::plain_text(
        "display name",
        name,
        domain::values::Lines::One,
        DISPLAY_NAME_CHARS_MAX,
    )?)
}

impl crate::services::Services {
    /// Sends a one-time code to the phone, for a community that exists.
    /// Limited per client address (here) and per phone (by the store).
    pub async fn request_signup_code(
        &self,
        request: &crate::services::Request,
        community: CommunityId,
        phone: &str,
        display_name: &str,
    ) -> AppResult<()> {
        self.signup_limiter.check(client_of(request))?;
        self.directory.community(&self.commands, community).await?;
        self.signup
            .request_code(community, phone, display_name)
            .await
    }

    /// Checks the code; the right one gives the resident it signs in.
    pub async fn verify_signup_code(
        &self,
        request: &crate::services::Request,
        community: CommunityId,
        phone: &str,
        code: &str,
    ) -> AppResult<Resident> {
        self.signup_limiter.check(client_of(request))?;
        self.signup.verify_code(community, phone, code).await
    }
}

/// The address the request comes from, as the adapter vouched for it.
fn client_of(request: &crate::services::Request) -> &str {
    request.meta.client.as_deref().unwrap_or("-")
}
