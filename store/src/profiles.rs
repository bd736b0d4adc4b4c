//! The erasable profiles of residents (docs/DESIGN.md §5) and their one-time sign-up
//! codes. Phone numbers are found by a keyed hash the caller computes; codes
//! are kept only as hashes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{SignupRefusal, StoreError};
use crate::store::EventStore;
use crate::types::CommunityId;

/// What a sign-up code request needs; hashes are computed by the caller.
pub struct CodeRequest<'a> {
    pub community_id: CommunityId,
    pub phone_hash: [u8; 32],
    pub code_hash: [u8; 32],
    pub display_name: &'a str,
    pub now: DateTime<Utc>,
    pub lifetime: Duration,
    /// How many codes one phone may be sent within an hour.
    pub codes_per_hour_max: i64,
}

/// A code offered for verification.
pub struct CodeAttempt<'a> {
    pub community_id: CommunityId,
    pub phone_hash: [u8; 32],
    pub code_hash: [u8; 32],
    /// Kept in the profile, so that an SMS can reach the resident later.
    pub phone: &'a str,
    pub now: DateTime<Utc>,
    pub attempts_max: i32,
}

/// A verified resident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resident {
    pub person_id: Uuid,
    pub display_name: String,
    /// False when the phone already had a profile: signing up again logs in.
    pub new: bool,
}

impl EventStore {
    /// Records a new code for a phone, refusing when the phone was sent too
    /// many codes in the last hour.
    pub async fn issue_signup_code(&self, request: CodeRequest<'_>) -> Result<(), StoreError> {
        let lifetime = chrono::Duration::from_std(request.lifetime)
            .map_err(|_| StoreError::invalid("lifetime", "too long"))?;
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        // Serialises requests for one phone, so the hourly count holds.
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1::text || encode($2, 'hex'), 0))",
                &[
                    &request.community_id.as_uuid().to_string(),
                    &&request.phone_hash[..],
                ],
            )
            .await?;
        let recent: i64 = transaction
            .query_one(
                "SELECT count(*) FROM signup_codes WHERE community_id = $1 AND phone_hash = $2 \
                 AND issued_at > $3::timestamptz - interval '1 hour'",
                &[
                    &request.community_id.as_uuid(),
                    &&request.phone_hash[..],
                    &request.now,
                ],
            )
            .await?
            .get(0);
        if recent >= request.codes_per_hour_max {
            return Err(StoreError::SignupRefused(SignupRefusal::TooManyCodes));
        }
        transaction
            .execute(
                "INSERT INTO signup_codes (community_id, phone_hash, code_hash, display_name, \
                 issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &request.community_id.as_uuid(),
                    &&request.phone_hash[..],
                    &&request.code_hash[..],
                    &request.display_name,
                    &request.now,
                    &(request.now + lifetime),
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Checks a code against the newest live one for the phone. A right code
    /// is used up and yields the resident (created on first sign-up); a
    /// wrong one counts as an attempt.
    pub async fn verify_signup_code(
        &self,
        attempt: CodeAttempt<'_>,
    ) -> Result<Resident, StoreError> {
        let community = attempt.community_id.as_uuid();
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_opt(
                "SELECT issued_at, code_hash, attempts, display_name FROM signup_codes \
                 WHERE community_id = $1 AND phone_hash = $2 AND used_at IS NULL \
                 AND expires_at > $3 ORDER BY issued_at DESC LIMIT 1 FOR UPDATE",
                &[&community, &&attempt.phone_hash[..], &attempt.now],
            )
            .await?
            .ok_or(StoreError::SignupRefused(SignupRefusal::NoLiveCode))?;
        let issued_at: DateTime<Utc> = row.get(0);
        let code_hash: Vec<u8> = row.get(1);
        let attempts: i32 = row.get(2);
        if attempts >= attempt.attempts_max {
            return Err(StoreError::SignupRefused(SignupRefusal::TooManyAttempts));
        }
        if code_hash != attempt.code_hash {
            transaction
                .execute(
                    "UPDATE signup_codes SET attempts = attempts + 1 WHERE community_id = $1 \
                     AND phone_hash = $2 AND issued_at = $3",
                    &[&community, &&attempt.phone_hash[..], &issued_at],
                )
                .await?;
            transaction.commit().await?;
            return Err(StoreError::SignupRefused(SignupRefusal::WrongCode));
        }
        transaction
            .execute(
                "UPDATE signup_codes SET used_at = $4 WHERE community_id = $1 \
                 AND phone_hash = $2 AND issued_at = $3",
                &[
                    &community,
                    &&attempt.phone_hash[..],
                    &issued_at,
                    &attempt.now,
                ],
            )
            .await?;
        let display_name: String = row.get(3);
        let inserted = transaction
            .query_opt(
                "INSERT INTO profiles (community_id, person_id, phone_hash, phone, display_name) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (community_id, phone_hash) DO NOTHING \
                 RETURNING person_id",
                &[
                    &community,
                    &Uuid::new_v4(),
                    &&attempt.phone_hash[..],
                    &attempt.phone,
                    &display_name,
                ],
            )
            .await?;
        let resident = match inserted {
            Some(row) => Resident {
                person_id: row.get(0),
                display_name,
                new: true,
            },
            None => {
                let row = transaction
                    .query_one(
                        "SELECT person_id, display_name FROM profiles \
                         WHERE community_id = $1 AND phone_hash = $2",
                        &[&community, &&attempt.phone_hash[..]],
                    )
                    .await?;
                Resident {
                    person_id: row.get(0),
                    display_name: row.get(1),
                    new: false,
                }
            }
        };
        if resident.new {
            crate::store::announce_topic_in(&transaction, &profiles_topic(attempt.community_id))
                .await?;
        }
        transaction.commit().await?;
        if resident.new {
            self.announce_topic(&profiles_topic(attempt.community_id));
        }
        Ok(resident)
    }

    /// The display names of the given people who have a profile (erased
    /// profiles have none).
    pub async fn display_names(
        &self,
        community_id: CommunityId,
        people: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, StoreError> {
        let client = self.inner.pool.get().await?;
        display_names_in(&client, community_id, people).await
    }

    /// Erases a resident's profile: the phone number, its keyed hash, the
    /// display name and any sign-up codes go; the pseudonymous id and when
    /// it went stay. False when there was no profile left to erase.
    pub async fn erase_profile(
        &self,
        community_id: CommunityId,
        person: Uuid,
    ) -> Result<bool, StoreError> {
        let mut client = self.inner.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "DELETE FROM signup_codes WHERE community_id = $1 AND phone_hash = \
                 (SELECT phone_hash FROM profiles WHERE community_id = $1 AND person_id = $2)",
                &[&community_id.as_uuid(), &person],
            )
            .await?;
        let erased = transaction
            .execute(
                "UPDATE profiles SET phone_hash = NULL, phone = NULL, display_name = NULL, \
                 erased_at = now() WHERE community_id = $1 AND person_id = $2 \
                 AND erased_at IS NULL",
                &[&community_id.as_uuid(), &person],
            )
            .await?;
        crate::store::announce_topic_in(&transaction, &profiles_topic(community_id)).await?;
        transaction.commit().await?;
        self.announce_topic(&profiles_topic(community_id));
        Ok(erased == 1)
    }
}

/// [`EventStore::display_names`] on `client` (a reader's snapshot).
pub async fn display_names_in(
    client: &impl deadpool_postgres::GenericClient,
    community_id: CommunityId,
    people: &[Uuid],
) -> Result<HashMap<Uuid, String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT person_id, display_name FROM profiles WHERE community_id = $1 \
             AND person_id = ANY($2) AND display_name IS NOT NULL",
        )
        .await?;
    let rows = client
        .query(&statement, &[&community_id.as_uuid(), &people])
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The topic announced when a community's profiles change (a resident's
/// first sign-up, an erasure): what shows display names watches it.
pub fn profiles_topic(community_id: CommunityId) -> String {
    format!("profiles:{}", community_id.as_uuid())
}
