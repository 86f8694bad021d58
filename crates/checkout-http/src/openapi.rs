//! The OpenAPI document, generated from the handlers' annotations and the
//! DTO types so it cannot drift from the code.

use utoipa::OpenApi;

use crate::dto;
use crate::problem::Problem;
use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "BookVerse Checkout", description = "Turns a bookshop customer's cart into a paid order."),
    paths(
        routes::place_order,
        routes::list_orders,
        routes::get_order,
        routes::audit_trail,
        routes::cancel_order,
        routes::fulfil_order,
        routes::complete_order,
        routes::refund_order,
        routes::put_stock,
        routes::get_stock,
        routes::list_stock,
        routes::stripe_webhook,
        routes::live,
        routes::ready,
        routes::metrics,
    ),
    components(schemas(
        Problem,
        dto::OrderDto,
        dto::OrderItemDto,
        dto::ReservationDto,
        dto::PaymentDto,
        dto::OrderListDto,
        dto::AuditTrailDto,
        dto::AuditEntryDto,
        dto::RefundDto,
        dto::StockItemDto,
        dto::StockListDto,
        dto::UnavailableItemDto,
        dto::PlaceOrderRequest,
        dto::PlaceOrderItem,
        dto::CancelRequest,
        dto::RefundRequest,
        dto::StockRequest,
    )),
    tags(
        (name = "orders", description = "Placing and managing orders"),
        (name = "inventory", description = "Local stock (embedded mode)"),
        (name = "webhooks", description = "Payment provider notifications"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
