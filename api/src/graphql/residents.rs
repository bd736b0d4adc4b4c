//! Residents: signing up from the QR page with a phone and a one-time
//! code, which gives a resident's token.

use crate::error::ApiResult;
use crate::graphql::{app, request};
use app::signup::CODE_LIFETIME;
use async_graphql::{Context, Object, SimpleObject};
use store::CommunityId;
use uuid::Uuid;

/// How long a resident's token lives.

#[derive(Default)]
pub struct SignupMutation;

#[derive(SimpleObject)]
pub struct CodeSent {
    pub expires_in_seconds: u64,
}

#[derive(SimpleObject)]
pub struct SignedIn {
    /// A bearer token for `Authorization: Bearer …`.
    pub token: String,
    pub person_id: Uuid,
    pub display_name: String,
    /// False when the phone had signed up before.
    pub new_resident: bool,
}

#[Object]
impl SignupMutation {
    /// Sends a one-time code to the phone. Rate-limited per client and per
    /// phone.
    async fn request_signup_code(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        phone: String,
        display_name: String,
    ) -> ApiResult<CodeSent> {
        app(ctx)
            .request_signup_code(
                &request(ctx),
                CommunityId::new(community_id),
                &phone,
                &display_name,
            )
            .await?;
        Ok(CodeSent {
            expires_in_seconds: CODE_LIFETIME.as_secs(),
        })
    }

    /// Checks the code; the right one signs the resident in.
    async fn verify_signup_code(
        &self,
        ctx: &Context<'_>,
        community_id: Uuid,
        phone: String,
        code: String,
    ) -> ApiResult<SignedIn> {
        let app = app(ctx);
        let resident = app
            .verify_signup_code(&request(ctx), CommunityId::new(community_id), &phone, &code)
            .await?;
        let token = crate::auth::resident_token(&app.tokens, community_id, resident.person_id)?;
        Ok(SignedIn {
            token,
            person_id: resident.person_id,
            display_name: resident.display_name,
            new_resident: resident.new,
        })
    }
}
