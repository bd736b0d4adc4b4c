//! The HTTP server: health, readiness and metrics for now.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use store::migrate::{applied_migration_version, latest_migration_version};
use store::EventStore;

/// How long in-flight requests may run after a stop signal.
const SHUTDOWN_TIMEOUT_S: u64 = 30;
/// The largest request body any route accepts.
pub const REQUEST_BODY_BYTES_MAX: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
}

/// Binds the routes to `listener`. actix-web stops gracefully on SIGINT and
/// SIGTERM: it stops accepting, lets in-flight requests finish, then returns.
pub fn build(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(REQUEST_BODY_BYTES_MAX))
            .wrap(tracing_actix::RequestSpan)
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
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
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(state.store.stats()))
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
