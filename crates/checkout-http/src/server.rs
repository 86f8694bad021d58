//! Building and running the HTTP server. The caller owns the listener (bind
//! to port 0 in tests, read the address back) and the shutdown: signals are
//! not handled here, `Server::handle().stop(true)` drains in-flight requests.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, Error, HttpResponse, HttpServer, web};
use tracing::Instrument;

use crate::openapi;
use crate::problem::Problem;
use crate::routes;
use crate::state::AppState;

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
    let span = tracing::info_span!("http_request", %method, %route, status = tracing::field::Empty);
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
        .wrap(from_fn(observe))
}

/// Starts serving on `listener`; returns the running server (await it, or
/// stop it through its handle).
pub fn serve(
    listener: TcpListener,
    state: AppState,
    settings: &ServerSettings,
) -> std::io::Result<Server> {
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
