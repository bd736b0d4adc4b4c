//! The HTTP server: GraphQL (queries and mutations over POST, GraphiQL on
//! GET, subscriptions over WebSocket), health, readiness and metrics.

use std::net::TcpListener;

use actix_web::dev::Server;
use std::sync::Arc;

use actix_web::{guard, web, App as ActixApp, HttpRequest, HttpResponse, HttpServer};
use async_graphql::http::GraphiQLSource;
use async_graphql_actix_web::GraphQLSubscription;
use serde_json::json;
use store::migrate::{applied_migration_version, latest_migration_version};
use store::EventStore;

use crate::clients::TrustedProxies;
use crate::error::ApiError;
use crate::graphql::cost::ParsedQueries;
use crate::graphql::{with_error_codes, ApiSchema, App};
use app::caller::Viewer;
use app::commands::RequestMeta;
use app::directory::vouched;
use app::idempotency::ClientKey;

/// How long in-flight requests may run after a stop signal.
const SHUTDOWN_TIMEOUT_S: u64 = 30;
/// The largest request body any route accepts.
pub const REQUEST_BODY_BYTES_MAX: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    /// For HTTP requests, each admitted by `parsed` first (it has no
    /// extension to check them).
    pub schema: ApiSchema,
    /// For WebSocket subscriptions, which its extension checks.
    pub subscription_schema: ApiSchema,
    pub parsed: Arc<ParsedQueries>,
    pub app: Arc<App>,
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Where residents reach this server (`https://…`, no trailing
    /// slash): what QR codes encode.
    pub public_base_url: Arc<str>,
}

/// Binds the routes to `listener`. actix-web stops gracefully on SIGINT and
/// SIGTERM: it stops accepting, lets in-flight requests finish, then returns.
pub fn build(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        ActixApp::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(REQUEST_BODY_BYTES_MAX))
            .wrap(tracing_actix::RequestSpan)
            .service(
                web::resource("/graphql")
                    .route(web::post().to(graphql))
                    .route(
                        web::get()
                            .guard(guard::Header("upgrade", "websocket"))
                            .to(graphql_ws),
                    )
                    .route(web::get().to(graphiql)),
            )
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .configure(crate::photos::routes)
            .configure(crate::pages::routes)
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the database answers and every migration this binary carries
/// has been applied.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let expected = latest_migration_version();
    let applied = async {
        let client = state.store.pool().get().await?;
        applied_migration_version(&client).await
    }
    .await;
    match applied {
        Ok(applied) if applied >= expected => {
            HttpResponse::Ok().json(json!({"status": "ready", "migration": applied}))
        }
        Ok(applied) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "migrations pending", "migration": applied, "expected": expected
        })),
        Err(error) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "database unavailable", "error": error.to_string()})),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = crate::metrics::render(state.store.stats());
    crate::metrics::render_stalls(&mut body, &state.app.runner.stalls().all());
    crate::metrics::render_read_cache(&mut body, &state.app.reads);
    match projections::progress::lag_by_projection(state.store.pool()).await {
        Ok(lags) => crate::metrics::render_lag(&mut body, &lags),
        Err(error) => tracing::warn!(%error, "projection lag unavailable"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// Who sent the request, where from, and with which retry key. A key that
/// breaks the rule refuses the request: ignoring it would let a retry pay
/// twice.
pub(crate) fn request_meta(
    state: &AppState,
    request: &HttpRequest,
) -> Result<RequestMeta, ApiError> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    Ok(RequestMeta {
        request_id: header("x-request-id")
            .filter(|id| id.len() <= 100)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        // The peer, or the client a trusted proxy names: a client must not
        // choose the key its rate limit is counted under.
        client: request.peer_addr().map(|address| {
            state
                .trusted_proxies
                .client(address.ip(), request.headers())
                .to_string()
        }),
        client_key: request
            .headers()
            .get("idempotency-key")
            .map(|value| ClientKey::parse(value.as_bytes()))
            .transpose()?,
        idempotency: None,
        actor: None,
        // Set by the server where it decides on a kept set-up, never by
        // the client.
        setup_version: None,
    })
}

/// Whom a client's idempotency key is scoped to: the signed-in subject,
/// or for an anonymous caller the address the server vouches for, never
/// anything the client chose (a fingerprint, a header from an untrusted
/// peer).
pub(crate) fn caller_scope(viewer: &Viewer, meta: &RequestMeta) -> String {
    match viewer {
        Viewer::Member(claims) => format!("person:{}", claims.sub),
        _ => format!("anonymous:{}", meta.client.as_deref().unwrap_or("-")),
    }
}

/// The request's body, at most `bytes_max` bytes: a longer one (by its
/// `Content-Length`, or once that many bytes arrived) is refused with 413
/// and an error body, before the rest is read.
pub(crate) async fn bounded_body(
    request: &HttpRequest,
    payload: web::Payload,
    bytes_max: usize,
) -> Result<web::BytesMut, HttpResponse> {
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > bytes_max as u64) {
        return Err(too_large(bytes_max));
    }
    bounded_stream(payload, bytes_max).await
}

/// Why a bounded read stopped.
pub(crate) enum BodyError {
    /// More than this many bytes came.
    TooLarge(usize),
    /// The stream broke off.
    Broken(String),
}

/// What a stream of chunks (a body, a multipart field) carries, at most
/// `bytes_max` bytes: the one bounded read every request body goes
/// through.
pub(crate) async fn read_bounded<E: std::fmt::Display>(
    mut chunks: impl futures::Stream<Item = Result<web::Bytes, E>> + Unpin,
    bytes_max: usize,
) -> Result<web::BytesMut, BodyError> {
    use futures::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| BodyError::Broken(error.to_string()))?;
        if body.len() + chunk.len() > bytes_max {
            return Err(BodyError::TooLarge(bytes_max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_bounded`], refused as a whole request is (413, or 400).
pub(crate) async fn bounded_stream<E: std::fmt::Display>(
    chunks: impl futures::Stream<Item = Result<web::Bytes, E>> + Unpin,
    bytes_max: usize,
) -> Result<web::BytesMut, HttpResponse> {
    read_bounded(chunks, bytes_max)
        .await
        .map_err(|error| match error {
            BodyError::TooLarge(bytes_max) => too_large(bytes_max),
            BodyError::Broken(error) => refused(
                actix_web::http::StatusCode::BAD_REQUEST,
                &ApiError::new("BAD_REQUEST", format!("the body did not arrive: {error}")),
            ),
        })
}

fn too_large(bytes_max: usize) -> HttpResponse {
    refused(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        &ApiError::new(
            "PAYLOAD_TOO_LARGE",
            format!("the request body is over {bytes_max} bytes"),
        ),
    )
}

/// A refusal of the whole request, as a GraphQL error body.
pub(crate) fn refused(status: actix_web::http::StatusCode, error: &ApiError) -> HttpResponse {
    HttpResponse::build(status).json(json!({"errors": [{
        "message": error.message,
        "extensions": {"code": error.code}
    }]}))
}

/// The bearer of the request's token, as far as the server vouches for
/// them (a removed staff member's token is refused).
pub(crate) async fn viewer(state: &AppState, request: &HttpRequest) -> Viewer {
    let authorization = request
        .headers()
        .get("authorization")
        .map(|value| value.to_str().unwrap_or("?"));
    let viewer = crate::auth::viewer_from_authorization(&state.app.tokens, authorization);
    vouched(&state.app.directory, &state.app.commands, viewer).await
}

/// `POST /graphql`: one GraphQL request as JSON.
async fn graphql(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match bounded_body(&request, payload, REQUEST_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let parsed: Result<async_graphql::Request, _> = serde_json::from_slice(&body);
    let mut graphql_request = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            return HttpResponse::BadRequest().json(json!({"errors": [{
                "message": format!("the body is not a GraphQL request: {error}"),
                "extensions": {"code": "BAD_REQUEST"}
            }]}))
        }
    };
    let meta = match request_meta(&state, &request) {
        Ok(meta) => meta,
        Err(error) => return refused(actix_web::http::StatusCode::BAD_REQUEST, &error),
    };
    let viewer = viewer(&state, &request).await;
    let response = match state.parsed.admit(&mut graphql_request, &viewer) {
        Ok(()) => {
            let graphql_request = graphql_request.data(viewer).data(meta);
            with_error_codes(state.schema.execute(graphql_request).await)
        }
        Err(refusal) => with_error_codes(async_graphql::Response::from_errors(vec![refusal])),
    };
    match refused_retry_after(&response) {
        Some(seconds) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", seconds.to_string()))
            .json(response),
        None => HttpResponse::Ok().json(response),
    }
}

/// When every error of a response with no data is `RATE_LIMITED`, the
/// whole request was refused: how long to wait (the longest asked).
fn refused_retry_after(response: &async_graphql::Response) -> Option<u64> {
    let nothing_done = match &response.data {
        async_graphql::Value::Null => true,
        async_graphql::Value::Object(fields) => {
            fields.values().all(|v| *v == async_graphql::Value::Null)
        }
        _ => false,
    };
    if !nothing_done || response.errors.is_empty() {
        return None;
    }
    response.errors.iter().try_fold(0_u64, |longest, error| {
        let extensions = error.extensions.as_ref()?;
        if extensions.get("code")? != &async_graphql::Value::from("RATE_LIMITED") {
            return None;
        }
        match extensions.get("retryAfterSeconds")? {
            async_graphql::Value::Number(n) => Some(longest.max(n.as_u64()?)),
            _ => None,
        }
    })
}

/// `GET /graphql` with a WebSocket upgrade: subscriptions over
/// graphql-transport-ws. The token comes in the `connection_init` payload
/// (`{"Authorization": "Bearer …"}`) or the upgrade request's header.
async fn graphql_ws(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let tokens = state.app.tokens.clone();
    let app = state.app.clone();
    let from_header = viewer(&state, &request).await;
    let meta = request_meta(&state, &request).map_err(|error| {
        actix_web::error::InternalError::from_response(
            error.message.clone(),
            refused(actix_web::http::StatusCode::BAD_REQUEST, &error),
        )
    })?;
    GraphQLSubscription::new(state.subscription_schema.clone())
        .on_connection_init(move |value| async move {
            let authorization = ["Authorization", "authorization"]
                .iter()
                .find_map(|key| value.get(key).and_then(|v| v.as_str()).map(str::to_string));
            let viewer = match authorization {
                Some(header) => {
                    let viewer = crate::auth::viewer_from_authorization(&tokens, Some(&header));
                    vouched(&app.directory, &app.commands, viewer).await
                }
                None => from_header,
            };
            let mut data = async_graphql::Data::default();
            data.insert(viewer);
            data.insert(meta);
            Ok(data)
        })
        .start(&request, payload)
}

/// `GET /graphql`: GraphiQL, to explore the schema by hand.
async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
}

mod tracing_actix {
    //! One tracing span per request, with method, path and status.

    use std::future::{ready, Ready};
    use std::time::Instant;

    use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
    use futures::future::LocalBoxFuture;

    pub struct RequestSpan;

    impl<S, B> Transform<S, ServiceRequest> for RequestSpan
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
        S::Future: 'static,
        B: 'static,
    {
        type Response = ServiceResponse<B>;
        type Error = actix_web::Error;
        type Transform = RequestSpanMiddleware<S>;
        type InitError = ();
        type Future = Ready<Result<Self::Transform, Self::InitError>>;

        fn new_transform(&self, service: S) -> Self::Future {
            ready(Ok(RequestSpanMiddleware { service }))
        }
    }

    pub struct RequestSpanMiddleware<S> {
        service: S,
    }

    impl<S, B> Service<ServiceRequest> for RequestSpanMiddleware<S>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
        S::Future: 'static,
        B: 'static,
    {
        type Response = ServiceResponse<B>;
        type Error = actix_web::Error;
        type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

        forward_ready!(service);

        fn call(&self, request: ServiceRequest) -> Self::Future {
            let method = request.method().to_string();
            let path = request.path().to_string();
            let started = Instant::now();
            let response = self.service.call(request);
            Box::pin(async move {
                let response = response.await?;
                tracing::info!(
                    %method,
                    %path,
                    status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request"
                );
                Ok(response)
            })
        }
    }
}
