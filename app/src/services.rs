//! The façade every adapter calls: one [`Services`] per running system,
//! and one [`Request`] per call (who is calling, from where, with which
//! idempotency key). GraphQL, and any adapter after it, parses its input,
//! calls one method here and maps the answer; the rules are behind it.

use hmac::{Hmac, Mac};
use uuid::Uuid;

use crate::audit::seals::Sealer;
use crate::caller::Viewer;
use crate::commands::{Commands, RequestMeta};
use crate::directory::Directory;
use crate::idempotency::Idempotency;
use crate::points::PointsDesk;
use crate::ratelimit::{RateLimiter, SubmissionLimits};
use crate::signup::Signup;

/// Everything the services share.
pub struct Services {
    pub commands: Commands,
    pub directory: Directory,
    pub points: PointsDesk,
    pub sealer: Sealer,
    pub signup: Signup,
    /// Submissions per anonymous address, per community, per account.
    pub submission_limits: SubmissionLimits,
    /// Sign-up code requests and attempts per client.
    pub signup_limiter: RateLimiter,
    /// Uploaded photos: where their bytes go, and how fast they may come.
    pub photos: crate::photos::Photos,
    /// Keys idempotent retries' derived values (report ids, salts).
    pub retry_key: Vec<u8>,
    /// Gathers concurrent filings' lookups of the open reports at their
    /// sites (the duplicate check) into one statement per community.
    pub open_reports: projections::reports::OpenReportLookups,
    /// Each community's reports a filing may duplicate, kept in memory and
    /// moved along the log: the duplicate check without a round trip.
    pub open_index: projections::reports::OpenReportIndex,
}

/// One call: the caller as the adapter vouched for it (its token checked
/// against the staff records), and the request's meta, whose idempotency
/// key the adapter has scoped to the caller and the operation.
#[derive(Clone, Debug)]
pub struct Request {
    pub viewer: Viewer,
    pub meta: RequestMeta,
}

impl Request {
    pub fn new(viewer: Viewer, meta: RequestMeta) -> Self {
        Request { viewer, meta }
    }
}

impl Services {
    /// A value derived from the request's scoped idempotency key, so that
    /// a retried request decides exactly as the first did (same ids, same
    /// salts) and the store can answer it with the first outcome. `None`
    /// without a key. Keyed with the server's secret: nothing in the log,
    /// the trail or an export lets anyone derive it.
    pub fn retry_seed(&self, meta: &RequestMeta, purpose: &str) -> Option<[u8; 32]> {
        let idempotency = meta.idempotency.as_ref()?;
        Some(self.seed_of(idempotency, purpose))
    }

    fn seed_of(&self, idempotency: &Idempotency, purpose: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<sha2::Sha256>>::new_from_slice(&self.retry_key).expect("any key length");
        mac.update(idempotency.key.as_bytes());
        mac.update(b"\0");
        mac.update(&idempotency.fingerprint);
        mac.update(b"\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// An id derived from a scoped idempotency key: the same on every retry.
    pub fn derived_id(&self, idempotency: &Idempotency, purpose: &str) -> Uuid {
        id_from_seed(self.seed_of(idempotency, purpose))
    }

    /// A new id: random, or derived from the idempotency key on a retry.
    pub fn new_id(&self, meta: &RequestMeta, purpose: &str) -> Uuid {
        match self.retry_seed(meta, purpose) {
            Some(seed) => id_from_seed(seed),
            None => Uuid::new_v4(),
        }
    }
}

fn id_from_seed(seed: [u8; 32]) -> Uuid {
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&seed[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
