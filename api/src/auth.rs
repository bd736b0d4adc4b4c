//! Bearer tokens (JWT, HS256) and who a request comes from.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::values::{Actor, PersonId, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

const ISSUER: &str = "civic-ledger";
/// The longest a token may live: a resident's phone stays signed in a month.
pub const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(31 * 24 * 3600);

/// What a token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The bearer's pseudonymous id.
    pub sub: Uuid,
    pub role: Role,
    /// The one community the token is good for.
    pub community: Uuid,
    /// Narrows a grid worker to these grids (within their staff record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grids: Vec<Uuid>,
    /// A clerk's centre (the points economy uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centre: Option<Uuid>,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    pub fn actor(&self) -> Actor {
        Actor {
            person: PersonId(self.sub),
            role: self.role,
        }
    }
}

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

    pub fn issue(&self, request: TokenRequest) -> Result<String, ApiError> {
        if request.lifetime > TOKEN_LIFETIME_MAX {
            return Err(ApiError::validation("a token lives at most 31 days"));
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
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Checks signature, issuer and expiry (tokens live in real time, not
    /// in the domain's time).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
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
                ApiError::unauthenticated(message)
            })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Viewer {
    /// No token: may only submit reports and suggestions through a site code.
    Anonymous,
    Member(Claims),
    /// A token was sent but is not good; every operation says why.
    Refused(ApiError),
}

impl Viewer {
    /// From an `Authorization: Bearer …` header value, if any.
    pub fn from_authorization(tokens: &Tokens, header: Option<&str>) -> Viewer {
        let Some(header) = header else {
            return Viewer::Anonymous;
        };
        match header.strip_prefix("Bearer ") {
            Some(token) => match tokens.verify(token.trim()) {
                Ok(claims) => Viewer::Member(claims),
                Err(error) => Viewer::Refused(error),
            },
            None => Viewer::Refused(ApiError::unauthenticated(
                "the Authorization header must be `Bearer <token>`",
            )),
        }
    }

    /// The signed-in member of `community`.
    pub fn member_of(&self, community: Uuid) -> Result<&Claims, ApiError> {
        match self {
            Viewer::Member(claims) if claims.community == community => Ok(claims),
            Viewer::Member(_) => Err(ApiError::forbidden("the token is for another community")),
            Viewer::Anonymous => Err(ApiError::unauthenticated("sign in first")),
            Viewer::Refused(error) => Err(error.clone()),
        }
    }

    /// A member of `community` with one of `roles`.
    pub fn with_role(&self, community: Uuid, roles: &[Role]) -> Result<&Claims, ApiError> {
        let claims = self.member_of(community)?;
        if roles.contains(&claims.role) {
            Ok(claims)
        } else {
            Err(ApiError::forbidden(format!(
                "a {} cannot do this",
                role_name(claims.role)
            )))
        }
    }
}

pub fn role_name(role: Role) -> String {
    match serde_json::to_value(role) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{role:?}"),
    }
}
