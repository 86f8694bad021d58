//! The API's handlers: decode at the edge, check what the [`Caller`] may
//! do, call one use case, encode. Error mapping lives in
//! [`crate::problem`], DTOs in [`crate::dto`], authentication in
//! [`crate::auth`].
//!
//! Authorization is checked by role before anything is looked up (so a 403
//! never depends on whether the resource exists), then by ownership for
//! customers, whose view of someone else's order is the 404 of an unknown
//! one.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use checkout_app::{PlacedOrder, WebhookOutcome};
use checkout_domain::{
    BookId, Cart, Currency, CustomerId, Money, OrderId, OrderState, ValidationErrors,
};
use checkout_ports::{InventoryError, OrderQuery};
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, Role, forbidden};
use crate::dto::{
    self, AuditTrailDto, Fields, OrderDto, OrderListDto, RefundDto, StockItemDto, StockListDto,
    UnavailableItemDto,
};
use crate::idempotency;
use crate::problem::Problem;
use crate::reply::Reply;
use crate::state::AppState;

/// Reads the body up to the configured limit (413 beyond).
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, Problem> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Unreadable body",
                e.to_string(),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                format!("the body must be at most {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether the JSON text nests arrays and objects deeper than `max`. A
/// linear scan before parsing, so that a hostile body costs no recursion;
/// brackets inside strings don't count. Invalid JSON is left to the parser.
fn nested_deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses a JSON body; an empty body reads as `{}` where `allow_empty`.
async fn json_body(
    payload: web::Payload,
    state: &AppState,
    allow_empty: bool,
) -> Result<Value, Problem> {
    let bytes = read_body(payload, state.settings.body_limit).await?;
    if allow_empty && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let max_depth = state.settings.max_json_depth;
    if nested_deeper_than(&bytes, max_depth) {
        let message = format!("is nested deeper than {max_depth} levels");
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "JSON nested too deeply",
            format!("the body {message}"),
        )
        .with("errors", json!([{ "field": "body", "message": message }])));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "Malformed JSON",
            format!("the body is not valid JSON: {e}"),
        )
        .with(
            "errors",
            json!([{ "field": "body", "message": e.to_string() }]),
        )
    })
}

fn order_id(raw: &str) -> Result<OrderId, Problem> {
    OrderId::parse(raw).map_err(|_| Problem::order_not_found())
}

fn order_reply(status: StatusCode, dto: &OrderDto) -> Reply {
    Reply::json(status, dto)
}

/// Maps the pipeline's outcome to the contract's status and body.
fn placed_reply(placed: PlacedOrder) -> Reply {
    match placed {
        PlacedOrder::Paid(o) => order_reply(StatusCode::CREATED, &OrderDto::from_order(&o))
            .header("location", format!("/orders/{}", o.id())),
        PlacedOrder::ActionRequired(o) => {
            order_reply(StatusCode::ACCEPTED, &OrderDto::with_next_action(&o))
                .header("location", format!("/orders/{}", o.id()))
        }
        PlacedOrder::PaymentPending(o) => {
            order_reply(StatusCode::ACCEPTED, &OrderDto::from_order(&o))
                .header("location", format!("/orders/{}", o.id()))
        }
        PlacedOrder::Declined {
            order,
            code,
            message,
        } => {
            let code = if code.is_empty() {
                "card_declined".to_owned()
            } else {
                code
            };
            Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                &code,
                "Payment declined",
                message,
            )
            .with_order(order.id())
            .into()
        }
        PlacedOrder::InventoryUnavailable { order, items } => Problem::new(
            StatusCode::CONFLICT,
            "insufficient_inventory",
            "Insufficient inventory",
            "some books are not available in the requested quantity",
        )
        .with_order(order.id())
        .with(
            "unavailable_items",
            items
                .iter()
                .map(UnavailableItemDto::from)
                .collect::<Vec<_>>(),
        )
        .into(),
        PlacedOrder::InventoryRejected { order, problem } => {
            let title = match problem.code() {
                "unknown_book" => "Unknown book",
                "price_mismatch" => "Price differs from the catalog",
                _ => "Order cannot be priced",
            };
            Problem::new(
                StatusCode::CONFLICT,
                problem.code(),
                title,
                problem.to_string(),
            )
            .with_order(order.id())
            .into()
        }
        PlacedOrder::PaymentProviderError {
            order,
            code,
            message,
        } => Problem::new(
            StatusCode::BAD_GATEWAY,
            "payment_provider_error",
            "Payment provider error",
            if message.is_empty() {
                "the payment provider failed".to_owned()
            } else {
                message
            },
        )
        .with("provider_code", code)
        .with_order(order.id())
        .into(),
        PlacedOrder::InventoryServiceUnavailable { order, .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "inventory_service_unavailable",
            "Inventory service unavailable",
            "the inventory service could not be reached; the order was cancelled",
        )
        .with_order(order.id())
        .into(),
    }
}

/// Place an order: validate, reserve, pay.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = dto::PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–255 printable ASCII characters; replays the first response")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 201, description = "Paid", body = OrderDto),
        (status = 202, description = "Payment needs customer action or is still unresolved", body = OrderDto),
        (status = 402, description = "Card declined", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Insufficient inventory, unknown book, price mismatch, idempotency key in use", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request or idempotency key reused", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Payment provider error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Inventory service unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> HttpResponse {
    let reply = match decode_cart(&req, payload, &state, &caller).await {
        Err(p) => p.into(),
        Ok((cart, None, _)) => run_pipeline(&state, cart, caller.actor()).await,
        Ok((cart, Some(key), fp)) => {
            let scope = caller.orders_scope(cart.customer_id());
            // Boxed: the pipeline's future is large, and this one holds it
            // next to the idempotency bookkeeping.
            idempotency::run_once(&state, &scope, &key, &fp, || {
                Box::pin(run_pipeline(&state, cart, caller.actor()))
            })
            .await
        }
    };
    reply.into_response()
}

/// Decodes the cart; a customer may order only for itself (403).
async fn decode_cart(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    caller: &Caller,
) -> Result<(Cart, Option<checkout_domain::IdempotencyKey>, String), Problem> {
    caller.require(&[Role::Customer, Role::Staff])?;
    let own = caller.own_customer()?;
    let key = idempotency::key_of(req)?;
    let body = json_body(payload, state, false).await?;
    let draft = dto::cart_draft(&body)?;
    let cart = Cart::parse(draft).map_err(|e| Problem::validation(&e))?;
    if own.is_some_and(|me| &me != cart.customer_id()) {
        return Err(forbidden("a customer may place orders only for itself"));
    }
    Ok((
        cart,
        key,
        idempotency::fingerprint("POST", "/orders", &body),
    ))
}

async fn run_pipeline(state: &AppState, cart: Cart, actor: Option<String>) -> Reply {
    match state.processor.place_order(&cart, actor).await {
        Ok(placed) => placed_reply(placed),
        Err(e) => Problem::from(e).into(),
    }
}

/// Read an order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = OrderDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&Role::ALL)?;
    let order = visible_order(&state, &caller, order_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(OrderDto::from_order(&order)))
}

/// The order, if the caller may see it; someone else's order is the same
/// 404 as an unknown one.
async fn visible_order(
    state: &AppState,
    caller: &Caller,
    id: OrderId,
) -> Result<checkout_domain::Order, Problem> {
    let order = state.processor.get(id).await?;
    if caller.may_see(order.customer_id()) {
        Ok(order)
    } else {
        Err(Problem::order_not_found())
    }
}

fn encode_cursor(id: OrderId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<OrderId> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok().map(OrderId::from_uuid)
}

/// List orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(
        ("customer_id" = Option<String>, Query, description = "Only this customer's orders"),
        ("state" = Option<String>, Query, description = "Only orders in this state"),
        ("limit" = Option<u32>, Query, description = "1–200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = OrderListDto), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_orders(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&Role::ALL)?;
    let own = caller.own_customer()?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| Problem::field("query", format!("unreadable query string: {e}")))?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = ValidationErrors::default();
    let customer_id = get("customer_id").and_then(|c| {
        CustomerId::parse(c)
            .map_err(|e| errors.push("customer_id", e.to_string()))
            .ok()
    });
    let order_state = get("state").and_then(|s| {
        s.parse::<OrderState>()
            .map_err(|e| errors.push("state", e.to_string()))
            .ok()
    });
    let limit = match get("limit") {
        None => 50,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=200).contains(&n) => n,
            _ => {
                errors.push("limit", "must be a whole number from 1 to 200");
                50
            }
        },
    };
    let before = get("cursor").and_then(|c| {
        let id = decode_cursor(c);
        if id.is_none() {
            errors.push("cursor", "is not a cursor this API returned");
        }
        id
    });
    if !errors.is_empty() {
        return Err(Problem::validation(&errors));
    }
    // A customer lists its own orders: the filter is forced to its id, and
    // asking for another customer's is refused rather than answered empty,
    // so a client bug shows instead of looking like "no orders".
    let customer_id = match (own, customer_id) {
        (Some(me), Some(asked)) if asked != me => {
            return Err(forbidden("a customer may list only its own orders"));
        }
        (Some(me), _) => Some(me),
        (None, asked) => asked,
    };
    let page = state
        .processor
        .list(&OrderQuery {
            customer_id,
            state: order_state,
            limit,
            before,
        })
        .await?;
    Ok(HttpResponse::Ok().json(OrderListDto {
        orders: page.orders.iter().map(OrderDto::from_order).collect(),
        next_cursor: page.next.map(encode_cursor),
    }))
}

/// An order's audit trail, oldest first.
#[utoipa::path(get, path = "/orders/{id}/audit", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = AuditTrailDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn audit_trail(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    // The trail names staff and carries internal metadata: not for
    // customers, whose view is the order itself.
    caller.require(&[Role::Staff, Role::Service])?;
    let entries = state.processor.audit_trail(order_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(AuditTrailDto {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// Cancel an order (an order in fulfilling is refunded first).
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    request_body(content = dto::CancelRequest, description = "Optional reason"),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = OrderDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_order(
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Customer, Role::Staff])?;
    let id = order_id(&path)?;
    if caller.own_customer()?.is_some() {
        visible_order(&state, &caller, id).await?;
    }
    let body = json_body(payload, &state, true).await?;
    let mut errors = ValidationErrors::default();
    let mut f = Fields {
        errors: &mut errors,
    };
    let reason = f
        .object(&body, "")
        .and_then(|o| f.string(o, "reason", "reason"));
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        errors.push("reason", "must be at most 500 characters");
    }
    if !errors.is_empty() {
        return Err(Problem::validation(&errors));
    }
    let reason = reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "Cancelled on request".into());
    let order = state.processor.cancel(id, reason, caller.actor()).await?;
    Ok(HttpResponse::Ok().json(OrderDto::from_order(&order)))
}

/// Start fulfilment: paid → fulfilling.
#[utoipa::path(post, path = "/orders/{id}/fulfill", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = OrderDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn fulfil_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Staff])?;
    let order = state
        .processor
        .fulfil(order_id(&path)?, caller.actor())
        .await?;
    Ok(HttpResponse::Ok().json(OrderDto::from_order(&order)))
}

/// Mark shipped: fulfilling → completed.
#[utoipa::path(post, path = "/orders/{id}/complete", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = OrderDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn complete_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Staff])?;
    let order = state
        .processor
        .complete(order_id(&path)?, caller.actor())
        .await?;
    Ok(HttpResponse::Ok().json(OrderDto::from_order(&order)))
}

/// Refund part or all of a paid or completed order.
#[utoipa::path(post, path = "/orders/{id}/refunds", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response")),
    request_body = dto::RefundRequest,
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 201, body = RefundDto), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "refund_exceeds_payment or invalid amount", body = Problem, content_type = "application/problem+json")))]
pub async fn refund_order(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> HttpResponse {
    let decoded = async {
        caller.require(&[Role::Staff])?;
        let id = order_id(&path)?;
        let key = idempotency::key_of(&req)?;
        let body = json_body(payload, &state, true).await?;
        let mut errors = ValidationErrors::default();
        let mut f = Fields {
            errors: &mut errors,
        };
        let (amount, reason) = match f.object(&body, "") {
            Some(o) => (
                f.decimal(o, "amount", "amount"),
                f.string(o, "reason", "reason"),
            ),
            None => (None, None),
        };
        if !errors.is_empty() {
            return Err(Problem::validation(&errors));
        }
        let fp = idempotency::fingerprint("POST", &format!("/orders/{id}/refunds"), &body);
        Ok((id, key, amount, reason, fp))
    }
    .await;
    let reply = match decoded {
        Err(p) => p.into(),
        Ok((id, None, amount, reason, _)) => {
            refund_reply(&state, id, amount, reason, caller.actor()).await
        }
        Ok((id, Some(key), amount, reason, fp)) => {
            let scope = caller.refunds_scope(id);
            idempotency::run_once(&state, &scope, &key, &fp, || {
                refund_reply(&state, id, amount, reason, caller.actor())
            })
            .await
        }
    };
    reply.into_response()
}

async fn refund_reply(
    state: &AppState,
    id: OrderId,
    amount: Option<rust_decimal::Decimal>,
    reason: Option<String>,
    actor: Option<String>,
) -> Reply {
    match state
        .processor
        .refund(id, amount, reason, actor, false)
        .await
    {
        Ok((refund, _)) => Reply::json(StatusCode::CREATED, &RefundDto::from(refund)),
        Err(e) => Problem::from(e).into(),
    }
}

fn local_stock(
    state: &AppState,
) -> Result<&std::sync::Arc<dyn checkout_ports::StockAdmin>, Problem> {
    state.stock.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "local_inventory_disabled",
            "Local inventory disabled",
            "the service uses an external inventory service",
        )
    })
}

fn stock_problem(e: InventoryError) -> Problem {
    match e {
        InventoryError::NotFound => Problem::new(
            StatusCode::NOT_FOUND,
            "book_not_found",
            "Book not found",
            "no stock item with that book id",
        ),
        InventoryError::ServiceUnavailable(m) => {
            tracing::warn!(error = %m, "stock unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
                "retry later",
            )
        }
        other => {
            tracing::error!(error = %other, "stock error");
            Problem::internal()
        }
    }
}

fn book_id(raw: &str) -> Result<BookId, Problem> {
    BookId::parse(raw).map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "book_not_found",
            "Book not found",
            "no stock item with that book id",
        )
    })
}

/// Create or replace a book in the local stock.
#[utoipa::path(put, path = "/inventory/{book_id}", tag = "inventory",
    params(("book_id" = String, Path, description = "Book id")),
    request_body = dto::StockRequest,
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = StockItemDto), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_stock(
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Staff])?;
    let stock = local_stock(&state)?;
    let body = json_body(payload, &state, false).await?;
    let mut errors = ValidationErrors::default();
    let book = BookId::parse(path.as_str())
        .map_err(|e| errors.push("book_id", e.to_string()))
        .ok();
    let mut f = Fields {
        errors: &mut errors,
    };
    let Some(obj) = f.object(&body, "") else {
        return Err(Problem::validation(&errors));
    };
    let available = f.integer(obj, "available", "available");
    let price = f.decimal(obj, "price", "price");
    let currency = f.string(obj, "currency", "currency");
    let title = f.string(obj, "title", "title");
    if available.is_none() && !errors.errors.iter().any(|e| e.field == "available") {
        errors.push("available", "is required");
    }
    let available = available.and_then(|a| {
        u32::try_from(a)
            .ok()
            .filter(|a| *a <= 100_000_000)
            .or_else(|| {
                errors.push("available", "must be between 0 and 100000000");
                None
            })
    });
    let currency = match currency {
        None => Some(Currency::USD),
        Some(c) => Currency::parse(&c)
            .map_err(|e| errors.push("currency", e.to_string()))
            .ok(),
    };
    let price = match (price, currency) {
        (None, _) => {
            if !errors.errors.iter().any(|e| e.field == "price") {
                errors.push("price", "is required");
            }
            None
        }
        (Some(p), Some(c)) => Money::new(p, c)
            .map_err(|e| errors.push("price", e.to_string()))
            .ok(),
        (Some(_), None) => None,
    };
    let title = match title.map(|t| t.trim().to_owned()) {
        Some(t) if !t.is_empty() && t.chars().count() <= 300 => Some(t),
        Some(_) => {
            errors.push("title", "must be 1–300 characters");
            None
        }
        None => {
            errors.push("title", "is required");
            None
        }
    };
    match (book, available, price, title) {
        (Some(book), Some(available), Some(price), Some(title)) if errors.is_empty() => {
            let item = stock
                .upsert_stock(&book, &title, price, available)
                .await
                .map_err(stock_problem)?;
            Ok(HttpResponse::Ok().json(StockItemDto::from(item)))
        }
        _ => Err(Problem::validation(&errors)),
    }
}

/// A book in the local stock.
#[utoipa::path(get, path = "/inventory/{book_id}", tag = "inventory",
    params(("book_id" = String, Path, description = "Book id")),
    responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = StockItemDto), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_stock(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Staff, Role::Service])?;
    let stock = local_stock(&state)?;
    let item = stock
        .get_stock(&book_id(&path)?)
        .await
        .map_err(stock_problem)?;
    Ok(HttpResponse::Ok().json(StockItemDto::from(item)))
}

/// The whole local stock.
#[utoipa::path(get, path = "/inventory", tag = "inventory", responses((status = 401, description = "No bearer token, or an invalid one (see WWW-Authenticate)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 200, body = StockListDto)))]
pub async fn list_stock(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, Problem> {
    caller.require(&[Role::Staff, Role::Service])?;
    let stock = local_stock(&state)?;
    let items = stock.list_stock().await.map_err(stock_problem)?;
    Ok(HttpResponse::Ok().json(StockListDto {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Stripe webhook: verified by its signature, settles the order from the
/// payment's current status.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature header")),
    responses((status = 200, description = "Accepted (processed, duplicate or ignored)"),
              (status = 400, description = "Bad or missing signature; nothing changed", body = Problem, content_type = "application/problem+json")))]
pub async fn stripe_webhook(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let Some(verifier) = state.webhooks.clone() else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "webhooks_disabled",
            "Webhooks disabled",
            "Stripe is not configured",
        ));
    };
    let body = read_body(payload, state.settings.body_limit.max(256 * 1024)).await?;
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let event = verifier
        .verify(&body, signature, state.clock.now())
        .map_err(|e| {
            tracing::warn!(error = %e, "rejected webhook delivery");
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                "Invalid webhook",
                e.to_string(),
            )
        })?;
    let outcome = state
        .processor
        .handle_payment_event(verifier.provider(), &event)
        .await?;
    let label = match outcome {
        WebhookOutcome::Processed => "processed",
        WebhookOutcome::Duplicate => "duplicate",
        WebhookOutcome::Ignored => "ignored",
    };
    Ok(HttpResponse::Ok().json(json!({ "received": true, "outcome": label })))
}

/// Liveness: the process runs.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200), (status = 503)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.health.ready().await {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "unavailable" }))
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.settings.metrics_on_api {
        return not_found(req).await;
    }
    admin_metrics(state).await
}

/// `/metrics` on the admin address (always served there).
pub async fn admin_metrics(state: web::Data<AppState>) -> HttpResponse {
    match &state.metrics {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable().body("metrics recorder not installed"),
    }
}

/// Unknown routes: a problem, not an empty 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .to_response()
}

#[cfg(test)]
mod tests {
    use super::nested_deeper_than;

    #[test]
    fn json_depth_counts_brackets_outside_strings_only() {
        assert!(!nested_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nested_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 2));
        assert!(!nested_deeper_than(br#"{"a": "[[[[[[\"[[[["}"#, 1));
        assert!(nested_deeper_than("[".repeat(10_000).as_bytes(), 32));
        assert!(!nested_deeper_than(b"", 0));
    }
}
