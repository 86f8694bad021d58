//! RFC 9457 problem details: the one place where errors become HTTP.
//!
//! Every error the API returns is `application/problem+json` with `type`,
//! `title`, `status`, `detail` and a machine-readable `code`, plus extension
//! members where the contract asks for them (`order_id`, `errors`,
//! `unavailable_items`, `from`/`to`). A 500 says nothing about its cause; the
//! cause chain goes to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use checkout_app::AppError;
use checkout_domain::{FieldError, OrderId, ValidationErrors};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (`/problems/card_declined`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Machine-readable code (`card_declined`, `validation_failed`, …).
    pub code: String,
    /// Contract extensions: `order_id`, `errors`, `unavailable_items`, …
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Box<Map<String, Value>>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("/problems/{code}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            extensions: Box::default(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extensions.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    pub fn with_order(self, id: OrderId) -> Self {
        self.with("order_id", id)
    }

    pub fn validation(errors: &ValidationErrors) -> Self {
        let detail = match errors.errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request is invalid",
            detail,
        )
        .with("errors", &errors.errors)
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(&ValidationErrors {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        })
    }

    pub fn order_not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "Order not found",
            "no order with that id",
        )
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "the request could not be completed; it has been logged",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(PROBLEM_JSON)
            .json(self)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }
    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

impl From<AppError> for Problem {
    /// Each use-case error has exactly one status; see `AppError`'s variants.
    fn from(e: AppError) -> Self {
        match e {
            AppError::Validation(v) => Problem::validation(&v),
            AppError::NotFound => Problem::order_not_found(),
            AppError::InvalidTransition { from, to } => Problem::new(
                StatusCode::CONFLICT,
                "invalid_transition",
                "Transition not allowed",
                format!("an order in {from} cannot move to {to}"),
            )
            .with("from", from)
            .with("to", to),
            AppError::RefundExceedsPayment { remaining } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refund_exceeds_payment",
                "Refund exceeds payment",
                format!(
                    "only {remaining} {} is left to refund",
                    remaining.currency()
                ),
            )
            .with("remaining", remaining)
            .with(
                "errors",
                json!([{ "field": "amount", "message": format!("must be at most {remaining}") }]),
            ),
            AppError::Conflict(id) => Problem::new(
                StatusCode::CONFLICT,
                "concurrent_modification",
                "Order changed concurrently",
                "the order was changed by another request; retry",
            )
            .with_order(id),
            AppError::PaymentProvider(p) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                "Payment provider error",
                p.to_string(),
            ),
            AppError::RefundOutcomeUnknown(m) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "refund_outcome_unknown",
                "Refund outcome unknown",
                format!(
                    "the provider did not confirm the refund ({m}); retry with the same Idempotency-Key"
                ),
            ),
            AppError::Unavailable(m) => {
                tracing::warn!(error = %m, "dependency unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "Service unavailable",
                    "a dependency is unavailable; retry later",
                )
            }
            AppError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Problem::internal()
            }
        }
    }
}
