//! Building and running the HTTP server. The caller owns the listener (bind
//! to port 0 in tests, read the address back) and the shutdown: signals are
//! not handled here, `Server::handle().stop(true)` drains in-flight requests.
//!
//! The middleware, outermost first: `observe` (latency, request span),
//! CORS (only when origins are configured), `harden` (header limits, the
//! request timeout, opaque 500s), then [`auth::authenticate`].

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Condition, DefaultHeaders, Next, from_fn};
use actix_web::{App, Error, HttpResponse, HttpServer, web};
use tracing::Instrument;

use crate::auth;
use crate::openapi;
use crate::problem::Problem;
use crate::routes;
use crate::state::{AppState, EdgeConfigError, HttpSettings};

/// Request latency histogram, by method, route pattern and status.
pub const REQUEST_DURATION: &str = "checkout_http_request_duration_seconds";

/// Server tuning.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Worker threads (default: one per core).
    pub workers: usize,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// A client must send its request head within this time.
    pub client_request_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            shutdown_timeout: Duration::from_secs(30),
            client_request_timeout: Duration::from_secs(5),
        }
    }
}

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders", web::post().to(routes::place_order))
        .route("/orders", web::get().to(routes::list_orders))
        .route("/orders/{id}", web::get().to(routes::get_order))
        .route("/orders/{id}/audit", web::get().to(routes::audit_trail))
        .route("/orders/{id}/cancel", web::post().to(routes::cancel_order))
        .route("/orders/{id}/fulfill", web::post().to(routes::fulfil_order))
        .route(
            "/orders/{id}/complete",
            web::post().to(routes::complete_order),
        )
        .route("/orders/{id}/refunds", web::post().to(routes::refund_order))
        .route("/inventory", web::get().to(routes::list_stock))
        .route("/inventory/{book_id}", web::put().to(routes::put_stock))
        .route("/inventory/{book_id}", web::get().to(routes::get_stock))
        .route("/webhooks/stripe", web::post().to(routes::stripe_webhook))
        .route("/health/live", web::get().to(routes::live))
        .route("/health/ready", web::get().to(routes::ready))
        .route("/metrics", web::get().to(routes::metrics))
        .route("/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi::document())
}

/// Times every request into the latency histogram and runs it inside a span
/// (the use cases add the order id to their own spans).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http_request",
        %method,
        %route,
        status = tracing::field::Empty,
        subject = tracing::field::Empty,
        role = tracing::field::Empty,
    );
    let res = next.call(req).instrument(span.clone()).await;
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    span.record("status", status);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route, "status" => status.to_string())
        .record(started.elapsed().as_secs_f64());
    res
}

/// The request limits `harden` enforces, copied out of the state once per
/// request (the settings themselves hold strings and an `Arc`).
#[derive(Clone, Copy)]
struct Limits {
    max_headers: usize,
    max_header_bytes: usize,
    request_timeout: Duration,
}

impl Limits {
    fn of(req: &ServiceRequest) -> Limits {
        let from = |s: &HttpSettings| Limits {
            max_headers: s.max_headers,
            max_header_bytes: s.max_header_bytes,
            request_timeout: s.request_timeout,
        };
        match req.app_data::<web::Data<AppState>>() {
            Some(state) => from(&state.settings),
            None => from(&HttpSettings::default()),
        }
    }
}

/// Header limits (431), the request timeout (503) and opaque 500s: a 500
/// never tells the client its cause, whatever produced it; the cause is
/// logged where it arose (or here, for errors from actix itself).
async fn harden(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let limits = Limits::of(&req);
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
        let problem = Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            "Request headers too large",
            format!(
                "at most {} headers of {} bytes in all are accepted",
                limits.max_headers, limits.max_header_bytes
            ),
        );
        return Ok(req
            .into_response(problem.to_response())
            .map_into_right_body());
    }
    // Not a clone of the request: routing needs it unshared.
    let path = req.path().to_owned();
    match tokio::time::timeout(limits.request_timeout, next.call(req)).await {
        Err(_) => {
            tracing::warn!(
                %path,
                timeout_ms = limits.request_timeout.as_millis(),
                "request timed out; its work was dropped"
            );
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "Request timed out",
                format!(
                    "the request did not complete within {} ms; retry (with the same Idempotency-Key)",
                    limits.request_timeout.as_millis()
                ),
            )
            .into())
        }
        Ok(Err(e)) if e.as_response_error().status_code() == StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %e, %path, "internal error");
            Err(Problem::internal().into())
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(res)) if res.status() == StatusCode::INTERNAL_SERVER_ERROR => {
            // Problems built by our handlers are already opaque and their
            // cause logged; anything else is replaced without reading it.
            let (http_req, original) = res.into_parts();
            let is_problem = original
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == crate::problem::PROBLEM_JSON.as_bytes());
            if !is_problem {
                tracing::error!(%path, "a 500 response that was not a problem document was replaced");
            }
            Ok(
                ServiceResponse::new(http_req, Problem::internal().to_response())
                    .map_into_right_body(),
            )
        }
        Ok(Ok(res)) => Ok(res.map_into_left_body()),
    }
}

/// Checks one configured CORS origin: an exact `http(s)://host[:port]`, no
/// path and no wildcard (a wildcard with bearer tokens is never what is
/// meant).
pub fn check_cors_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("CORS origin `{origin}` must start with https:// or http://"))?;
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(format!(
            "CORS origin `{origin}` must be scheme://host[:port], with no path or wildcard"
        ));
    }
    Ok(())
}

/// CORS for the configured origins: the API's methods, the headers a
/// browser client sends (`Authorization`, `Idempotency-Key`) and the ones
/// it needs to read. Credentials (cookies) are not supported: the API
/// takes bearer tokens only.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::LOCATION,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(3600);
    // `serve` refuses invalid origins; `app` alone (tests, benches) skips
    // them rather than fail every worker's start.
    for origin in origins.iter().filter(|o| check_cors_origin(o).is_ok()) {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Builds the app: the routes, the problem+json fallbacks, the middleware.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let origins = &state.settings.cors_allowed_origins;
    let cors_on = !origins.is_empty();
    let cors = cors(origins);
    App::new()
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            Problem::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                e.to_string(),
            )
            .into()
        }))
        .configure(configure)
        .default_service(web::to(routes::not_found))
        .wrap(from_fn(auth::authenticate))
        .wrap(from_fn(harden))
        .wrap(DefaultHeaders::new().add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")))
        .wrap(Condition::new(cors_on, cors))
        .wrap(from_fn(observe))
}

/// The admin app: `/metrics` and the health probes only, unauthenticated,
/// for an address that only the infrastructure can reach.
pub fn admin_app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .route("/metrics", web::get().to(routes::admin_metrics))
        .route("/health/live", web::get().to(routes::live))
        .route("/health/ready", web::get().to(routes::ready))
        .default_service(web::to(routes::not_found))
        .wrap(from_fn(harden))
}

/// Starts serving on `listener`; returns the running server (await it, or
/// stop it through its handle).
///
/// Refuses (`PermissionDenied`) to serve with authentication disabled on
/// anything but a loopback address, and (`InvalidInput`) a malformed CORS
/// origin: both are configuration errors the operator must see at start-up.
pub fn serve(
    listener: TcpListener,
    state: AppState,
    settings: &ServerSettings,
) -> std::io::Result<Server> {
    let address = listener.local_addr()?;
    state.settings.check_for(address).map_err(|e| {
        let kind = match e {
            EdgeConfigError::Auth(_) => std::io::ErrorKind::PermissionDenied,
            EdgeConfigError::CorsOrigin(_) => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    })?;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || app(state.clone()))
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .client_request_timeout(settings.client_request_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok(server)
}

/// Serves `/metrics` and the health probes on a separate (admin) listener,
/// with one worker. Set `HttpSettings::metrics_on_api = false` in the API's
/// state so that metrics are no longer served on the API's address.
pub fn serve_admin(
    listener: TcpListener,
    state: AppState,
    settings: &ServerSettings,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || admin_app(state.clone()))
        .workers(1)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .client_request_timeout(settings.client_request_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::check_cors_origin;

    #[test]
    fn cors_origins_are_exact_origins() {
        for ok in [
            "https://shop.bookverse.example",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert!(check_cors_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "https://*.bookverse.example",
            "shop.bookverse.example",
            "https://shop.example/path",
            "https://",
            "ftp://x",
        ] {
            assert!(check_cors_origin(bad).is_err(), "{bad}");
        }
    }
}
