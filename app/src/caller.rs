//! Who is calling, as the application sees it: the adapters turn a bearer
//! token (or its absence) into a [`Viewer`], and every service checks roles,
//! communities, grids and centres against it.

use domain::values::{Actor, PersonId, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

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

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Viewer {
    /// No token: may only submit reports and suggestions through a site code.
    Anonymous,
    Member(Claims),
    /// A token was sent but is not good; every operation says why.
    Refused(AppError),
}

impl Viewer {
    /// The signed-in member of `community`.
    pub fn member_of(&self, community: Uuid) -> Result<&Claims, AppError> {
        match self {
            Viewer::Member(claims) if claims.community == community => Ok(claims),
            Viewer::Member(_) => Err(AppError::forbidden("the token is for another community")),
            Viewer::Anonymous => Err(AppError::unauthenticated("sign in first")),
            Viewer::Refused(error) => Err(error.clone()),
        }
    }

    /// A reader of `community`'s public side: anonymous (`None`), or a
    /// member of it, never a member of another community.
    pub fn reader_of(&self, community: Uuid) -> Result<Option<&Claims>, AppError> {
        match self {
            Viewer::Anonymous => Ok(None),
            other => other.member_of(community).map(Some),
        }
    }

    /// The caller's claims when they are a member of `community`; anyone
    /// else (anonymous, a member of another community, a refused token)
    /// sees what the public sees.
    pub fn claims_in(&self, community: Uuid) -> Option<&Claims> {
        match self {
            Viewer::Member(claims) if claims.community == community => Some(claims),
            _ => None,
        }
    }

    /// A member of `community` with one of `roles`.
    pub fn with_role(&self, community: Uuid, roles: &[Role]) -> Result<&Claims, AppError> {
        let claims = self.member_of(community)?;
        if roles.contains(&claims.role) {
            Ok(claims)
        } else {
            Err(AppError::forbidden(format!(
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
