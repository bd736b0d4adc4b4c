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

/// The demo's sender: keeps the last code sent to each phone so that the
/// sign-up page of a demo server can show it (marked as a demo). Never
/// used outside `serve --demo`.
#[derive(Default)]
pub struct DemoCodes {
    codes: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// Phones the demo sender remembers at most; past it, it forgets them all.
const DEMO_PHONES_MAX: usize = 10_000;

impl DemoCodes {
    /// The last code sent to `phone` (as the resident typed it).
    pub fn last_for(&self, phone: &str) -> Option<String> {
        let phone = parse_phone(phone).ok()?;
        self.codes
            .lock()
            .expect("not poisoned")
            .get(&phone)
            .cloned()
    }
}

#[async_trait]
impl CodeSender for DemoCodes {
    async fn send(&self, phone: &str, code: &str) -> Result<(), String> {
        let mut codes = self.codes.lock().expect("not poisoned");
        if codes.len() >= DEMO_PHONES_MAX {
            codes.clear();
        }
        codes.insert(phone.to_string(), code.to_string());
        Ok(())
    }
}

/// Posts each code to an SMS gateway: `template` is the body, with
/// `{phone}` and `{code}` put in (escaped for JSON when the body is JSON,
/// percent-encoded when it is a form), and `authorization`, when set, is
/// the `Authorization` header. A gateway that does not answer 2xx within
/// the timeout has not sent the code.
pub struct HttpCodeSender {
    client: reqwest::Client,
    pub url: String,
    pub template: String,
    pub content_type: String,
    pub authorization: Option<String>,
}

/// How long the gateway may take to take a code.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpCodeSender {
    pub fn new(
        url: &str,
        template: &str,
        content_type: &str,
        authorization: Option<String>,
    ) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("the gateway URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the gateway URL must be http or https".into());
        }
        if !template.contains("{code}") {
            return Err("the template must hold {code}".into());
        }
        let client = reqwest::Client::builder()
            .timeout(GATEWAY_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpCodeSender {
            client,
            url: url.to_string(),
            template: template.to_string(),
            content_type: content_type.to_string(),
            authorization,
        })
    }

    /// The body for one code.
    pub fn body(&self, phone: &str, code: &str) -> String {
        let put = |value: &str| -> String {
            if self.content_type.contains("json") {
                let quoted = serde_json::to_string(value).expect("a string");
                quoted[1..quoted.len() - 1].to_string()
            } else if self.content_type.contains("x-www-form-urlencoded") {
                serde_urlencoded::to_string([("", value)]).expect("a string")[1..].to_string()
            } else {
                value.to_string()
            }
        };
        self.template
            .replace("{phone}", &put(phone))
            .replace("{code}", &put(code))
    }
}

#[async_trait]
impl CodeSender for HttpCodeSender {
    async fn send(&self, phone: &str, code: &str) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", &self.content_type)
            .body(self.body(phone, code));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the SMS gateway: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the SMS gateway answered {}", response.status()));
        }
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

#[cfg(test)]
mod http_sender_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A gateway that answers `status` to one request and hands back what
    /// it received.
    async fn gateway(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let received = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            loop {
                let read = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if read == 0 {
                    break;
                }
            }
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (url, received)
    }

    #[tokio::test]
    async fn the_gateway_gets_the_code_in_its_template_and_a_refusal_is_an_error() {
        let (url, received) = gateway(200).await;
        let sender = HttpCodeSender::new(
            &url,
            r#"{"to":"{phone}","text":"验证码 {code}"}"#,
            "application/json",
            Some("Bearer gateway-key".into()),
        )
        .unwrap();
        sender.send("+86138\"0013", "123456").await.unwrap();
        let request = received.await.unwrap();
        assert!(request.starts_with("POST /sms "), "{request}");
        assert!(request
            .to_ascii_lowercase()
            .contains("authorization: bearer gateway-key"));
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let json: serde_json::Value = serde_json::from_str(body).expect("the body is JSON still");
        assert_eq!(json["to"], "+86138\"0013", "escaped, not broken out of");
        assert_eq!(json["text"], "验证码 123456");

        let (url, _) = gateway(503).await;
        let sender = HttpCodeSender::new(
            &url,
            "code={code}",
            "application/x-www-form-urlencoded",
            None,
        )
        .unwrap();
        assert!(sender.send("13800138000", "654321").await.is_err());
        assert_eq!(sender.body("1 3", "a&b"), "code=a%26b");

        for (url, template) in [
            ("ftp://gateway", "{code}"),
            ("not a url", "{code}"),
            ("http://gateway", "no code here"),
        ] {
            assert!(
                HttpCodeSender::new(url, template, "text/plain", None).is_err(),
                "{url} {template}"
            );
        }
    }
}
