//! Bearer tokens (JWT, HS256) and who a request comes from.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::values::Role;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use uuid::Uuid;

use app::caller::{Claims, Viewer};
use app::error::AppError;

const ISSUER: &str = "civic-ledger";
/// The longest a token may live: a resident's phone stays signed in a month.
pub const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(31 * 24 * 3600);

/// Signs and checks tokens with the server's key.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// What a new token should say.
pub struct TokenRequest {
    pub subject: Uuid,
    pub role: Role,
    pub community: Uuid,
    pub grids: Vec<Uuid>,
    pub centre: Option<Uuid>,
    pub lifetime: Duration,
}

impl Tokens {
    pub fn new(key: &[u8]) -> Self {
        Tokens {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
        }
    }

    pub fn issue(&self, request: TokenRequest) -> Result<String, AppError> {
        if request.lifetime > TOKEN_LIFETIME_MAX {
            return Err(AppError::validation(
                "lifetime",
                "a token lives at most 31 days",
            ));
        }
        let now = unix_now();
        let claims = Claims {
            sub: request.subject,
            role: request.role,
            community: request.community,
            grids: request.grids,
            centre: request.centre,
            iss: ISSUER.to_string(),
            iat: now,
            exp: now + request.lifetime.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)
    }

    /// Checks signature, issuer and expiry (tokens live in real time, not
    /// in the domain's time).
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                let message = match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token's signature is not ours",
                    _ => "the token is malformed",
                };
                AppError::unauthenticated(message)
            })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// From an `Authorization: Bearer …` header value, if any.
pub fn viewer_from_authorization(tokens: &Tokens, header: Option<&str>) -> Viewer {
    let Some(header) = header else {
        return Viewer::Anonymous;
    };
    match header.strip_prefix("Bearer ") {
        Some(token) => match tokens.verify(token.trim()) {
            Ok(claims) => Viewer::Member(claims),
            Err(error) => Viewer::Refused(error),
        },
        None => Viewer::Refused(AppError::unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// How long a resident stays signed in after signing up.
pub const RESIDENT_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The token a resident who just proved their phone signs in with.
pub fn resident_token(tokens: &Tokens, community: Uuid, person: Uuid) -> Result<String, AppError> {
    tokens.issue(TokenRequest {
        subject: person,
        role: Role::Citizen,
        community,
        grids: Vec::new(),
        centre: None,
        lifetime: RESIDENT_TOKEN_LIFETIME,
    })
}
