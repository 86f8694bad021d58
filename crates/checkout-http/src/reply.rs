//! A response as bytes, so that an idempotent request can store it and
//! replay it exactly.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use checkout_ports::StoredResponse;
use serde::Serialize;

use crate::problem::{PROBLEM_JSON, Problem};

/// A finished response: status, the headers worth replaying and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: StatusCode, body: &impl Serialize) -> Self {
        let body = serde_json::to_vec(body).unwrap_or_default();
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    pub fn problem(p: &Problem) -> Self {
        let body = serde_json::to_vec(p).unwrap_or_default();
        Self {
            status: p.status_code(),
            headers: vec![("content-type".into(), PROBLEM_JSON.into())],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    pub fn into_response(self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        for (k, v) in self.headers {
            r.insert_header((k, v));
        }
        r.body(self.body)
    }

    pub fn to_stored(&self) -> StoredResponse {
        StoredResponse {
            status: self.status.as_u16(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    pub fn from_stored(s: StoredResponse) -> Self {
        Self {
            status: StatusCode::from_u16(s.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: s.headers,
            body: s.body,
        }
    }
}

impl From<Problem> for Reply {
    fn from(p: Problem) -> Self {
        Reply::problem(&p)
    }
}
