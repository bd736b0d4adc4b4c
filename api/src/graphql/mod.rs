//! The GraphQL API (docs/DESIGN.md §7): queries, mutations and subscriptions over
//! the read models and the commands, with role checks on every field.

mod audit;
mod community;
pub mod cost;
mod patrols;
mod points;
mod reports;
mod residents;
mod subscription;
mod suggestions;
pub(crate) mod types;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, MergedObject, Schema};
use projections::ProjectionRunner;
use store::CommunityId;
use uuid::Uuid;

use app::caller::Viewer;
use app::commands::RequestMeta;
use app::idempotency::{ClientKey, Idempotency};
use app::services::{Request, Services};

use crate::auth::Tokens;
use crate::error::{ApiError, ApiResult};

/// A query may nest this deep (the deepest useful one is about 8).
pub const DEPTH_MAX: usize = 15;
/// Each field costs 1, list fields by their page size.
pub const COMPLEXITY_MAX: usize = 2_000;
/// Items per page of any list.
pub const PAGE_SIZE_MAX: i32 = 100;
pub const PAGE_SIZE_DEFAULT: i32 = 20;

/// Everything the resolvers share: the application's services, and what
/// only the adapter needs.
pub struct App {
    pub services: Services,
    pub runner: ProjectionRunner,
    /// Reads of the read models, answers of repeated ones kept.
    pub reads: projections::ReadCache,
    pub tokens: Tokens,
    /// How long a query waits for the read models to reach `atLeast`.
    pub freshness_timeout: Duration,
    /// On a demo server only: the codes sign-up "sent", for its pages to
    /// show.
    pub demo_codes: Option<Arc<app::signup::DemoCodes>>,
}

impl std::ops::Deref for App {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

// Each area keeps its queries, mutations and types together; the schema
// merges them.
#[derive(MergedObject, Default)]
pub struct Mutation(
    community::SetupMutation,
    residents::SignupMutation,
    reports::SubmitReportMutation,
    suggestions::SubmitSuggestionMutation,
    reports::ReportMutation,
    suggestions::SuggestionMutation,
    patrols::PatrolMutation,
    points::ledger::LedgerMutation,
    points::wallets::WalletMutation,
    points::counter::CounterMutation,
    audit::ErasureMutation,
);

#[derive(MergedObject, Default)]
pub struct Query(
    community::CommunityQuery,
    reports::ReportQuery,
    suggestions::SuggestionQuery,
    patrols::PatrolQuery,
    points::wallets::WalletQuery,
    points::ledger::LedgerQuery,
    points::counter::CounterQuery,
    points::leaderboards::LeaderboardQuery,
    audit::AuditQuery,
    audit::AuditTrailQuery,
);

pub type ApiSchema = Schema<Query, Mutation, subscription::Subscription>;

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, subscription::Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::Subscription,
    )
    .limit_depth(DEPTH_MAX)
    .limit_complexity(COMPLEXITY_MAX)
}

/// The schema HTTP requests run on. It has no extension: each field of a
/// schema with one, whatever the extension does, is resolved through the
/// extensions' hooks (a lookup of its type and field by name and a boxed
/// future more), and that cost a quarter of the server's time for a page
/// of twenty reports. So the HTTP handler checks each query itself before
/// running it ([`cost::ParsedQueries::admit`]), and nothing else may run
/// a request on it.
pub fn build_schema(app: Arc<App>) -> ApiSchema {
    builder().data(app).finish()
}

/// The schema WebSocket subscriptions run on: requests reach async-graphql
/// there directly, so the query check is its extension.
pub fn build_subscription_schema(app: Arc<App>) -> ApiSchema {
    builder().extension(cost::QueryCost).data(app).finish()
}

/// The schema's SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

pub(crate) fn app<'a>(ctx: &Context<'a>) -> &'a Arc<App> {
    ctx.data_unchecked::<Arc<App>>()
}

pub(crate) fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
}

/// The request's meta for the field being resolved: the client's
/// idempotency key, if it sent one, scoped to the caller and to this field
/// and its arguments.
pub(crate) fn meta(ctx: &Context<'_>) -> RequestMeta {
    let mut meta = ctx.data_opt::<RequestMeta>().cloned().unwrap_or_default();
    meta.idempotency = meta.client_key.as_ref().map(|key| scoped(ctx, &meta, key));
    meta
}

/// A client key scoped to who is calling and what this field asks.
pub(crate) fn scoped(ctx: &Context<'_>, meta: &RequestMeta, key: &ClientKey) -> Idempotency {
    let caller = crate::server::caller_scope(viewer(ctx), meta);
    let field = ctx.field();
    let mut arguments = String::new();
    // Arguments that cannot be resolved fail the field anyway; they
    // fingerprint as empty here.
    for (name, value) in field.arguments().unwrap_or_default() {
        arguments.push_str(name.as_str());
        arguments.push('=');
        canonical_value(&value, &mut arguments);
        arguments.push(';');
    }
    Idempotency::client(&caller, key, field.name(), arguments.as_bytes())
}

/// A GraphQL value written the same way whatever order the client gave an
/// input object's fields in.
fn canonical_value(value: &async_graphql::Value, out: &mut String) {
    use async_graphql::Value;
    match value {
        Value::Object(fields) => {
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            for (name, field) in sorted {
                out.push_str(&serde_json::to_string(name.as_str()).expect("a string"));
                out.push(':');
                canonical_value(field, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::List(items) => {
            out.push('[');
            for item in items {
                canonical_value(item, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The call as the application sees it: the vouched caller and this
/// field's meta.
pub(crate) fn request(ctx: &Context<'_>) -> Request {
    Request::new(viewer(ctx).clone(), meta(ctx))
}

/// Waits until `projection` has folded `community` up to `at_least`.
pub(crate) async fn fresh(
    ctx: &Context<'_>,
    projection: &'static str,
    community: Uuid,
    at_least: Option<i64>,
) -> ApiResult<()> {
    let Some(position) = at_least else {
        return Ok(());
    };
    let app = app(ctx);
    let reached = app
        .runner
        .progress()
        .wait_for(
            app.commands.store().pool(),
            projection,
            CommunityId::new(community),
            position,
            app.freshness_timeout,
        )
        .await?;
    if reached {
        Ok(())
    } else {
        Err(ApiError::new(
            "STALE",
            format!("the {projection} read model has not reached position {position} yet; retry"),
        ))
    }
}

/// The most integer digits a decimal string in may have (a billion, the
/// most points anything holds, has ten).
const DECIMAL_INTEGER_DIGITS_MAX: usize = 10;

/// A decimal amount from a string (amounts travel as strings so that no
/// client rounds them through a float). The one grammar for every decimal
/// in: 1 to 10 digits, then optionally a point and 1 or 2 digits
/// (`12`, `12.5`, `12.50`); no sign, exponent, underscore, or space inside.
/// The value's own bounds are the rule's that takes it.
pub(crate) fn decimal(field: &str, text: &str) -> ApiResult<rust_decimal::Decimal> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let valid = (1..=DECIMAL_INTEGER_DIGITS_MAX).contains(&whole.len())
        && digits(whole)
        && digits(fraction)
        && fraction.len() <= 2
        && !(text.contains('.') && fraction.is_empty());
    let parsed = valid
        .then(|| text.parse::<rust_decimal::Decimal>().ok())
        .flatten();
    parsed.ok_or_else(|| {
        ApiError::validation(format!(
            "{field}: digits with at most 2 decimals, such as 12 or 12.50"
        ))
    })
}

/// A decimal going out: the one canonical form every amount leaves the API
/// in, the shortest that says its value (`25`, `25.5`, `0.05`, `0`), the
/// same as in the log.
pub(crate) fn amount(value: impl Into<rust_decimal::Decimal>) -> String {
    value.into().normalize().to_string()
}

/// A page size from `first`: 1 to 100, 20 when not given.
pub(crate) fn page_size(first: Option<i32>) -> ApiResult<i64> {
    match first {
        None => Ok(i64::from(PAGE_SIZE_DEFAULT)),
        Some(n) if (1..=PAGE_SIZE_MAX).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(ApiError::validation(format!("first: 1 to {PAGE_SIZE_MAX}"))),
    }
}

/// Gives every error a stable `extensions.code`: resolvers set theirs;
/// errors from parsing and validating the query get one here.
pub fn with_error_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if has_code {
            continue;
        }
        let code =
            if error.message.contains("nested too deep") || error.message.contains("recursion") {
                "QUERY_TOO_DEEP"
            } else if error.message.contains("too complex") {
                "QUERY_TOO_COMPLEX"
            } else {
                "BAD_QUERY"
            };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    response
}
