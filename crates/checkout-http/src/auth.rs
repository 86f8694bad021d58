//! Who is calling, and what they may do.
//!
//! Authentication is a bearer JWT (RFC 6750) checked on every request except
//! the public ones ([`is_public`]: health probes, metrics, the OpenAPI
//! document and the Stripe webhook, which proves itself by its signature).
//! A token is signed with HS256 (a shared secret, also used by
//! `checkout-service token` to mint local tokens) or RS256/ES256 (public
//! keys from a PEM file or a JWKS file); `exp`, `nbf`, `iss` and `aud` are
//! checked against the service's [`Clock`](checkout_ports::Clock) with a
//! small leeway, so tests with a fixed clock are exact.
//!
//! The token's role claim gives a [`Role`]; handlers ask the [`Caller`]
//! extractor what the role may do. `docs/security.md` is the model in
//! prose; the authorization matrix test (`tests/authz.rs`) is the same model
//! as a table.
//!
//! [`AuthMode::Disabled`] (the embedded default, for local use) lets every
//! request through with no actor; it is refused on anything but a loopback
//! address ([`Authenticator::check_bind`]).
//!
//! Nothing here logs a token, a secret or a key: failures are logged by
//! their kind only.

use std::collections::HashSet;
use std::fmt;
use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use checkout_domain::{CustomerId, OrderId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::problem::Problem;
use crate::state::AppState;

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "bookverse-checkout";
/// Tokens longer than this are refused before any parsing: a JWT with a
/// few claims is well under 2 KiB, and parsing attacker-sized input costs.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Subjects are ids; anything longer is not one of ours.
pub const MAX_SUBJECT_LEN: usize = 255;
/// The leeway may absorb clock skew, not extend a token's life.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// HS256 needs a secret at least as long as its hash (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Lifetime of a token minted for local use when none is asked for: a
/// working session, not a credential to keep.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The algorithms this service accepts. Anything else, `none` included, is
/// refused before a key is even looked for.
const ACCEPTED_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

/// A secret string: usable and serialisable (configuration is layered by
/// serialising defaults), never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; the caller keeps it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Whether requests are authenticated at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Everyone may do everything and the audit trail has no actor. The
    /// embedded default, so that a fresh checkout runs with no setup; only
    /// allowed on a loopback address.
    #[default]
    Disabled,
    /// Every non-public request needs a valid bearer JWT.
    Jwt,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Disabled => "disabled",
            AuthMode::Jwt => "jwt",
        })
    }
}

/// The `auth` section of the configuration.
///
/// In `jwt` mode at least one key source must be set; several may be (an
/// identity provider's JWKS for staff and services, and the HS256 secret for
/// locally minted tokens, say). A token is checked against the keys of its
/// header's algorithm (and `kid`, when both the token and the key have one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// HS256 shared secret, at least 32 bytes; also what `checkout-service
    /// token` signs with. Empty = no HS256.
    pub hs256_secret: SecretString,
    /// A PEM file holding one public key: RSA (→ RS256) or EC P-256 (→ ES256).
    pub public_key_pem: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`) of RSA (RS256) and EC P-256 (ES256)
    /// public keys; keys marked `"use": "enc"` and other kinds are skipped.
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of, when it is a list).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 300).
    pub leeway_secs: u64,
    /// The claim holding the role: a string, or a list of strings of which
    /// the known roles count (`staff` wins over the others).
    pub role_claim: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Disabled,
            hs256_secret: SecretString::default(),
            public_key_pem: None,
            jwks_file: None,
            issuer: "bookverse".into(),
            audience: "bookverse-checkout".into(),
            leeway_secs: 30,
            role_claim: "role".into(),
        }
    }
}

/// A configuration that cannot be used, or a token that cannot be minted.
/// Each message names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "auth: mode `jwt` needs a key: set auth.hs256_secret, auth.public_key_pem or auth.jwks_file"
    )]
    NoKeys,
    #[error("auth.hs256_secret: must be at least {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("auth.hs256_secret: not set, so no token can be minted")]
    NoSecret,
    #[error("auth.{key}: must not be empty")]
    Empty { key: &'static str },
    #[error("auth.leeway_secs: must be at most {MAX_LEEWAY_SECS}")]
    LeewayTooLarge,
    #[error("auth.{key}: cannot read {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.public_key_pem: {path} holds no RSA or EC P-256 public key")]
    BadPem { path: PathBuf },
    #[error("auth.jwks_file: {path}: {reason}")]
    BadJwks { path: PathBuf, reason: String },
    #[error(
        "auth.mode: authentication is disabled, which is only allowed on a loopback address, not {addr}; set auth.mode = \"jwt\""
    )]
    DisabledOnPublicAddress { addr: SocketAddr },
    #[error("token subject: {0}")]
    BadSubject(String),
    #[error("token lifetime must be at least one second")]
    BadLifetime,
    #[error("signing the token failed: {0}")]
    Signing(String),
}

/// What a principal may do. The rights of each are in `docs/security.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A shopper; the token's subject is its customer id.
    Customer,
    /// BookVerse staff: everything.
    Staff,
    /// Another BookVerse service: reads.
    Service,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Customer, Role::Staff, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a role (customer, staff, service)"))
    }
}

/// An authenticated caller: the token's subject and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

/// Why a request was not authenticated. Every variant but [`NoRole`] is a
/// 401 with a `WWW-Authenticate` challenge; the messages go to the client
/// and are safe for a header (no quotes, nothing from the token).
///
/// [`NoRole`]: AuthError::NoRole
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the Authorization header is not a single Bearer token")]
    NotBearer,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("the token was signed with a key this service does not know")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token is not meant for this service")]
    WrongAudience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("the token's subject is not a valid id")]
    BadSubject,
    /// A valid token whose role claim names none of our roles (or both
    /// `customer` and `service`): authenticated, but with no rights. 403.
    #[error("the token carries no role this service grants rights to")]
    NoRole,
}

impl AuthError {
    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no error code when
    /// no credentials were sent at all.
    fn challenge(&self) -> String {
        match self {
            AuthError::Missing => format!("Bearer realm=\"{REALM}\""),
            AuthError::NoRole => format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"{self}\""
            ),
            _ => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{self}\""
            ),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::NoRole => "forbidden",
            _ => "invalid_token",
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::NoRole => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let title = match self {
            AuthError::NoRole => "Forbidden",
            AuthError::Missing => "Authentication required",
            _ => "Invalid token",
        };
        let mut res =
            Problem::new(self.status_code(), self.code(), title, self.to_string()).to_response();
        if let Ok(v) = header::HeaderValue::from_str(&self.challenge()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// A 403: the caller is known but may not do this. Deliberately the same
/// for every resource, so that it never tells whether one exists.
pub fn forbidden(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
}

/// One key a token may be verified with.
struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The JWT half of the [`Authenticator`].
struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    leeway: i64,
    role_claim: String,
}

/// Authenticates requests according to an [`AuthConfig`]. Built once at
/// start-up (reading key files then) and shared by every worker.
pub struct Authenticator {
    /// `None` when authentication is disabled.
    jwt: Option<JwtVerifier>,
}

impl fmt::Debug for Authenticator {
    /// Counts, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.jwt {
            None => f
                .debug_struct("Authenticator")
                .field("mode", &AuthMode::Disabled)
                .finish(),
            Some(j) => f
                .debug_struct("Authenticator")
                .field("mode", &AuthMode::Jwt)
                .field("keys", &j.keys.len())
                .field("issuer", &j.issuer)
                .field("audience", &j.audience)
                .field("leeway_secs", &j.leeway)
                .finish(),
        }
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::disabled()
    }
}

impl Authenticator {
    /// Lets everything through, with no actor (local use only).
    pub fn disabled() -> Self {
        Self { jwt: None }
    }

    /// Checks the configuration and loads its keys. In `disabled` mode the
    /// key settings are ignored (the secret may still be there for minting).
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        if config.mode == AuthMode::Disabled {
            return Ok(Self::disabled());
        }
        for (key, value) in [
            ("issuer", &config.issuer),
            ("audience", &config.audience),
            ("role_claim", &config.role_claim),
        ] {
            if value.trim().is_empty() {
                return Err(AuthConfigError::Empty { key });
            }
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthConfigError::LeewayTooLarge);
        }
        let mut keys = Vec::new();
        if !config.hs256_secret.is_empty() {
            keys.push(VerifyingKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(hs256_secret(config)?),
            });
        }
        // An empty path (an environment variable set to "") means unset.
        let set = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = set(&config.public_key_pem) {
            keys.push(pem_key(&path)?);
        }
        if let Some(path) = set(&config.jwks_file) {
            keys.extend(jwks_keys(&path)?);
        }
        if keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        tracing::info!(
            keys = keys.len(),
            issuer = %config.issuer,
            audience = %config.audience,
            "bearer JWT authentication enabled"
        );
        Ok(Self {
            jwt: Some(JwtVerifier {
                keys,
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway: i64::try_from(config.leeway_secs).unwrap_or(0),
                role_claim: config.role_claim.clone(),
            }),
        })
    }

    pub fn mode(&self) -> AuthMode {
        if self.jwt.is_some() {
            AuthMode::Jwt
        } else {
            AuthMode::Disabled
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.jwt.is_some()
    }

    /// Refuses to serve unauthenticated on anything but loopback, and warns
    /// loudly when serving unauthenticated at all. [`crate::serve`] calls it
    /// with the listener's address; the binary may call it earlier.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), AuthConfigError> {
        if self.is_enabled() {
            return Ok(());
        }
        if !is_loopback(addr.ip()) {
            return Err(AuthConfigError::DisabledOnPublicAddress { addr });
        }
        tracing::warn!(
            %addr,
            "authentication is DISABLED (auth.mode = \"disabled\"): anyone who can reach this address can do anything; for local use only"
        );
        Ok(())
    }

    /// Authenticates a request from its headers at `now`.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Caller, AuthError> {
        let Some(jwt) = &self.jwt else {
            return Ok(Caller::Unrestricted);
        };
        let mut values = headers.get_all(header::AUTHORIZATION);
        let Some(value) = values.next() else {
            return Err(AuthError::Missing);
        };
        if values.next().is_some() {
            return Err(AuthError::NotBearer);
        }
        let text = value.to_str().map_err(|_| AuthError::NotBearer)?;
        let (scheme, token) = text.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::NotBearer);
        }
        jwt.verify(token, now).map(Caller::Principal)
    }

    /// Verifies one token at `now` (the CLI and tests use this directly).
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Principal, AuthError> {
        match &self.jwt {
            Some(jwt) => jwt.verify(token, now),
            None => Err(AuthError::UnknownKey),
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn hs256_secret(config: &AuthConfig) -> Result<&[u8], AuthConfigError> {
    let secret = config.hs256_secret.expose().as_bytes();
    if secret.is_empty() {
        return Err(AuthConfigError::NoSecret);
    }
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(AuthConfigError::WeakSecret);
    }
    Ok(secret)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::ReadFile {
        key,
        path: path.to_owned(),
        source,
    })
}

/// One public key from a PEM file: RSA gives RS256, EC gives ES256.
fn pem_key(path: &Path) -> Result<VerifyingKey, AuthConfigError> {
    let pem = read("public_key_pem", path)?;
    let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        (Algorithm::RS256, k)
    } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        (Algorithm::ES256, k)
    } else {
        return Err(AuthConfigError::BadPem {
            path: path.to_owned(),
        });
    };
    Ok(VerifyingKey {
        kid: None,
        alg,
        key,
    })
}

/// The RS256 and ES256 signing keys of a JWKS file. Other keys (encryption
/// keys, other algorithms, symmetric keys, which have no place in a file of
/// public keys) are skipped with a warning; a file with none left is an
/// error, since it would lock everyone out.
fn jwks_keys(path: &Path) -> Result<Vec<VerifyingKey>, AuthConfigError> {
    let bad = |reason: String| AuthConfigError::BadJwks {
        path: path.to_owned(),
        reason,
    };
    let raw = read("jwks_file", path)?;
    let set: JwkSet =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let label = kid.clone().unwrap_or_else(|| format!("#{i}"));
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            tracing::warn!(key = %label, "JWKS: skipping an encryption key");
            continue;
        }
        let inferred = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            _ => None,
        };
        let alg = match (jwk.common.key_algorithm, inferred) {
            (None, Some(alg)) => alg,
            (Some(KeyAlgorithm::RS256), Some(Algorithm::RS256)) => Algorithm::RS256,
            (Some(KeyAlgorithm::ES256), Some(Algorithm::ES256)) => Algorithm::ES256,
            _ => {
                tracing::warn!(key = %label, "JWKS: skipping a key that is neither RS256 nor ES256");
                continue;
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {label}: {e}")))?;
        keys.push(VerifyingKey { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(bad("no RS256 or ES256 signing key in the set".into()));
    }
    Ok(keys)
}

impl JwtVerifier {
    fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        // An unknown `alg` (`none` included) fails to parse here.
        let head = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !ACCEPTED_ALGORITHMS.contains(&head.alg) {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let candidates = self.keys.iter().filter(|k| {
            k.alg == head.alg
                && match (&head.kid, &k.kid) {
                    (Some(wanted), Some(have)) => wanted == have,
                    _ => true,
                }
        });
        let mut validation = Validation::new(head.alg);
        // Time is checked below against the service's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let mut outcome = Err(AuthError::UnknownKey);
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                // Another key of the same algorithm may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    outcome = Err(AuthError::BadSignature);
                }
                Err(e) => {
                    outcome = Err(rejection(e.kind()));
                    break;
                }
            }
        }
        let claims = outcome?;
        self.check_time(&claims, now)?;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(AuthError::MissingClaim("sub")),
        };
        if subject.is_empty()
            || subject.len() > MAX_SUBJECT_LEN
            || !subject.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AuthError::BadSubject);
        }
        let role = role_of(claims.get(&self.role_claim))?;
        Ok(Principal { subject, role })
    }

    fn check_time(
        &self,
        claims: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let now = now.unix_timestamp();
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(AuthError::MissingClaim("exp"))?;
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        match claims.get("nbf") {
            None | Some(Value::Null) => Ok(()),
            Some(v) => match numeric_date(v) {
                Some(nbf) if now.saturating_add(self.leeway) < nbf => Err(AuthError::NotYetValid),
                Some(_) => Ok(()),
                None => Err(AuthError::Malformed),
            },
        }
    }
}

/// A JWT NumericDate (seconds since the epoch, possibly fractional).
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            // In range by the filter above; a fraction of a second is dropped.
            .map(|f| f.floor() as i64)
    })
}

/// The role a claim grants: a string, or a list of strings in which the
/// known roles count. `staff` can do whatever `customer` or `service` can,
/// so it wins; `customer` with `service` has no clear meaning and is refused.
fn role_of(claim: Option<&Value>) -> Result<Role, AuthError> {
    let roles: HashSet<Role> = match claim {
        Some(Value::String(s)) => s.parse().ok().into_iter().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
            .collect(),
        _ => HashSet::new(),
    };
    if roles.contains(&Role::Staff) {
        return Ok(Role::Staff);
    }
    let mut it = roles.into_iter();
    match (it.next(), it.next()) {
        (Some(role), None) => Ok(role),
        _ => Err(AuthError::NoRole),
    }
}

fn rejection(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "sub" => "sub",
            "iss" => "iss",
            "aud" => "aud",
            _ => "required",
        }),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::UnsupportedAlgorithm
        }
        // Includes a key of the wrong kind for the algorithm: our key
        // selection rules that out, so it can only be a broken token.
        _ => AuthError::Malformed,
    }
}

/// Mints an HS256 token that this configuration accepts: `sub`, the role in
/// the configured role claim, `iss`, `aud`, `iat`/`nbf` = `now` and `exp` =
/// `now + ttl`. For local use and tests (`checkout-service token`); real
/// deployments get their tokens from an identity provider.
pub fn mint_hs256(
    config: &AuthConfig,
    subject: &str,
    role: Role,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<String, AuthConfigError> {
    let secret = hs256_secret(config)?;
    if subject.is_empty()
        || subject.len() > MAX_SUBJECT_LEN
        || !subject.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(AuthConfigError::BadSubject(format!(
            "must be 1–{MAX_SUBJECT_LEN} visible ASCII characters"
        )));
    }
    if role == Role::Customer {
        CustomerId::parse(subject).map_err(|e| AuthConfigError::BadSubject(e.to_string()))?;
    }
    let ttl = i64::try_from(ttl.as_secs())
        .ok()
        .filter(|s| *s > 0)
        .ok_or(AuthConfigError::BadLifetime)?;
    let iat = now.unix_timestamp();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject));
    claims.insert(config.role_claim.clone(), json!(role.as_str()));
    claims.insert("iss".into(), json!(config.issuer));
    claims.insert("aud".into(), json!(config.audience));
    claims.insert("iat".into(), json!(iat));
    claims.insert("nbf".into(), json!(iat));
    claims.insert("exp".into(), json!(iat.saturating_add(ttl)));
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthConfigError::Signing(e.to_string()))
}

/// Who is calling, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is disabled: every right, no actor.
    Unrestricted,
    Principal(Principal),
}

impl Caller {
    /// The audit trail's actor: the token subject.
    pub fn actor(&self) -> Option<String> {
        match self {
            Caller::Unrestricted => None,
            Caller::Principal(p) => Some(p.subject.clone()),
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Unrestricted => None,
            Caller::Principal(p) => Some(p.role),
        }
    }

    /// 403 unless the caller has one of `roles`. Checked before anything is
    /// looked up, so a refusal says nothing about the resource.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        match self {
            Caller::Unrestricted => Ok(()),
            Caller::Principal(p) if roles.contains(&p.role) => Ok(()),
            Caller::Principal(p) => Err(forbidden(format!("the {} role may not do this", p.role))),
        }
    }

    /// For a customer, the customer id it acts as (its subject); `None`
    /// for callers not confined to one customer. A customer whose subject
    /// is not a valid customer id can own nothing: 403.
    pub fn own_customer(&self) -> Result<Option<CustomerId>, Problem> {
        match self {
            Caller::Principal(p) if p.role == Role::Customer => {
                CustomerId::parse(p.subject.as_str())
                    .map(Some)
                    .map_err(|_| forbidden("the token's subject is not a customer id"))
            }
            _ => Ok(None),
        }
    }

    /// Whether the caller may see an order of `owner`. A customer sees its
    /// own orders only; the caller turns `false` into the same 404 as an
    /// unknown order, so an order's existence is never revealed.
    pub fn may_see(&self, owner: &CustomerId) -> bool {
        match self {
            Caller::Principal(p) if p.role == Role::Customer => p.subject == owner.as_str(),
            _ => true,
        }
    }

    /// The idempotency scope of creating an order for `customer`. With
    /// authentication keys are scoped per subject (two callers choosing the
    /// same key never meet); without it, per customer as before. The space
    /// keeps the two kinds apart: customer ids and subjects have none.
    pub fn orders_scope(&self, customer: &CustomerId) -> String {
        match self {
            Caller::Unrestricted => format!("orders:{customer}"),
            Caller::Principal(p) => format!("orders sub={}", p.subject),
        }
    }

    /// The idempotency scope of refunding `order`: per order, and per
    /// subject when authenticated.
    pub fn refunds_scope(&self, order: OrderId) -> String {
        match self {
            Caller::Unrestricted => format!("refunds:{order}"),
            Caller::Principal(p) => format!("refunds:{order} sub={}", p.subject),
        }
    }
}

/// Handlers take a `Caller` argument: the one the middleware found, or, if
/// a route escaped the middleware, one authenticated here (fail closed).
impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(caller) = req.extensions().get::<Caller>() {
            return ready(Ok(caller.clone()));
        }
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            tracing::error!("no AppState registered: refusing the request");
            return ready(Err(Problem::internal().into()));
        };
        ready(
            state
                .settings
                .auth
                .authenticate(req.headers(), state.clock.now())
                .map_err(Error::from),
        )
    }
}

/// Paths anyone may call: probes and metrics (scraped by infrastructure
/// that holds no token), the API's own description, and the Stripe webhook,
/// which authenticates by its signature. Exact matches only, so that
/// anything else, unknown routes included, needs a token.
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/health/live" | "/health/ready" | "/metrics" | "/openapi.json" | "/webhooks/stripe"
    )
}

/// Middleware: authenticates every non-public request, answers 401/403
/// itself when that fails, and leaves the [`Caller`] for the handlers. The
/// subject is recorded on the request span (never the token).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if is_public(req.path()) {
        return next.call(req).await;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        tracing::error!("no AppState registered: refusing the request");
        return Err(Problem::internal().into());
    };
    let caller = match state
        .settings
        .auth
        .authenticate(req.headers(), state.clock.now())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(reason = %e, "request not authenticated");
            return Err(e.into());
        }
    };
    if let Caller::Principal(p) = &caller {
        let span = tracing::Span::current();
        span.record("subject", p.subject.as_str());
        span.record("role", p.role.as_str());
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use actix_web::http::header::HeaderValue;
    use time::macros::datetime;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn config() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Jwt,
            hs256_secret: SECRET.into(),
            ..AuthConfig::default()
        }
    }

    fn token(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn claims() -> Value {
        let t = NOW.unix_timestamp();
        json!({"sub": "cust-42", "role": "customer", "iss": "bookverse", "aud": "bookverse-checkout", "exp": t + 60, "nbf": t})
    }

    fn verify(token: &str) -> Result<Principal, AuthError> {
        Authenticator::new(&config()).unwrap().verify(token, NOW)
    }

    #[test]
    fn a_minted_token_verifies_as_its_subject_and_role() {
        let t = mint_hs256(
            &config(),
            "cust-42",
            Role::Customer,
            Duration::from_secs(60),
            NOW,
        )
        .unwrap();
        assert_eq!(
            verify(&t),
            Ok(Principal {
                subject: "cust-42".into(),
                role: Role::Customer
            })
        );
    }

    #[test]
    fn time_claims_are_checked_with_the_leeway_against_the_given_clock() {
        let t = NOW.unix_timestamp();
        let with = |k: &str, v: i64| {
            let mut c = claims();
            c[k] = json!(v);
            token(c)
        };
        // Expired 29 s ago: inside the 30 s leeway; 30 s ago: outside.
        assert!(verify(&with("exp", t - 29)).is_ok());
        assert_eq!(verify(&with("exp", t - 30)), Err(AuthError::Expired));
        assert!(verify(&with("nbf", t + 30)).is_ok());
        assert_eq!(verify(&with("nbf", t + 31)), Err(AuthError::NotYetValid));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(verify(&token(c)), Err(AuthError::MissingClaim("exp")));
    }

    #[test]
    fn issuer_audience_subject_and_role_are_checked() {
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            token(c)
        };
        assert_eq!(
            verify(&with("iss", json!("evil"))),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            verify(&with("aud", json!("other"))),
            Err(AuthError::WrongAudience)
        );
        assert!(verify(&with("aud", json!(["other", "bookverse-checkout"]))).is_ok());
        assert_eq!(
            verify(&with("sub", json!("has space"))),
            Err(AuthError::BadSubject)
        );
        assert_eq!(
            verify(&with("role", json!("admin"))),
            Err(AuthError::NoRole)
        );
        assert_eq!(
            verify(&with(
                "role",
                json!(["offline_access", "staff", "customer"])
            ))
            .map(|p| p.role),
            Ok(Role::Staff)
        );
        assert_eq!(
            verify(&with("role", json!(["customer", "service"]))),
            Err(AuthError::NoRole)
        );
    }

    #[test]
    fn forged_and_unsigned_tokens_are_refused() {
        let good = token(claims());
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another secret, just as long as ours!"),
        )
        .unwrap();
        assert_eq!(verify(&forged), Err(AuthError::BadSignature));
        let (head_payload, _) = good.rsplit_once('.').unwrap();
        let (_, payload) = head_payload.split_once('.').unwrap();
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(verify(&none), Err(AuthError::Malformed));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(&hs512), Err(AuthError::UnsupportedAlgorithm));
        assert_eq!(verify("not.a.jwt"), Err(AuthError::Malformed));
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn the_authorization_header_must_be_one_bearer_token() {
        let auth = Authenticator::new(&config()).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(auth.authenticate(&h, NOW), Err(AuthError::Missing));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(auth.authenticate(&h, NOW), Err(AuthError::NotBearer));
        let t = token(claims());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {t}")).unwrap(),
        );
        assert!(matches!(
            auth.authenticate(&h, NOW),
            Ok(Caller::Principal(_))
        ));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        assert_eq!(auth.authenticate(&h, NOW), Err(AuthError::NotBearer));
        assert_eq!(
            Authenticator::disabled().authenticate(&HeaderMap::new(), NOW),
            Ok(Caller::Unrestricted)
        );
    }

    #[test]
    fn configuration_errors_name_their_key() {
        let mut c = config();
        c.hs256_secret = "short".into();
        assert!(matches!(
            Authenticator::new(&c),
            Err(AuthConfigError::WeakSecret)
        ));
        c.hs256_secret = SecretString::default();
        assert!(matches!(
            Authenticator::new(&c),
            Err(AuthConfigError::NoKeys)
        ));
        let mut c = config();
        c.audience = " ".into();
        let e = Authenticator::new(&c).unwrap_err();
        assert!(e.to_string().contains("auth.audience"), "{e}");
        let mut c = config();
        c.leeway_secs = 3600;
        assert!(matches!(
            Authenticator::new(&c),
            Err(AuthConfigError::LeewayTooLarge)
        ));
        let mut c = config();
        c.public_key_pem = Some("/nonexistent/key.pem".into());
        let e = Authenticator::new(&c).unwrap_err();
        assert!(e.to_string().contains("auth.public_key_pem"), "{e}");
        assert!(matches!(
            mint_hs256(
                &AuthConfig::default(),
                "x",
                Role::Staff,
                Duration::from_secs(1),
                NOW
            ),
            Err(AuthConfigError::NoSecret)
        ));
        assert!(matches!(
            mint_hs256(
                &config(),
                "cust 42",
                Role::Customer,
                Duration::from_secs(1),
                NOW
            ),
            Err(AuthConfigError::BadSubject(_))
        ));
    }

    #[test]
    fn disabled_mode_is_refused_off_loopback() {
        let off = Authenticator::disabled();
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
            "127.8.9.10:0",
        ] {
            assert!(off.check_bind(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.1.2.3:8080",
            "192.168.1.1:80",
        ] {
            assert!(
                matches!(
                    off.check_bind(bad.parse().unwrap()),
                    Err(AuthConfigError::DisabledOnPublicAddress { .. })
                ),
                "{bad}"
            );
        }
        let on = Authenticator::new(&config()).unwrap();
        assert!(on.check_bind("0.0.0.0:8080".parse().unwrap()).is_ok());
    }

    #[test]
    fn config_round_trips_and_never_prints_the_secret() {
        let c = config();
        let debug = format!("{c:?} {:?}", Authenticator::new(&c).unwrap());
        assert!(!debug.contains(SECRET), "{debug}");
        let back: AuthConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: AuthConfig = serde_json::from_value(json!({"mode": "jwt"})).unwrap();
        assert_eq!(partial.issuer, "bookverse");
        assert_eq!(partial.mode, AuthMode::Jwt);
        assert!(serde_json::from_value::<AuthConfig>(json!({"mode": "sometimes"})).is_err());
    }

    #[test]
    fn scopes_are_per_subject_when_authenticated() {
        let customer = CustomerId::parse("cust-42").unwrap();
        let a = Caller::Principal(Principal {
            subject: "cust-42".into(),
            role: Role::Customer,
        });
        let staff = Caller::Principal(Principal {
            subject: "staff-1".into(),
            role: Role::Staff,
        });
        assert_ne!(a.orders_scope(&customer), staff.orders_scope(&customer));
        assert_ne!(
            a.orders_scope(&customer),
            Caller::Unrestricted.orders_scope(&customer)
        );
        assert_eq!(
            Caller::Unrestricted.orders_scope(&customer),
            "orders:cust-42"
        );
        assert!(a.may_see(&customer));
        assert!(!a.may_see(&CustomerId::parse("cust-7").unwrap()));
        assert!(staff.may_see(&customer));
        assert!(a.require(&[Role::Staff]).is_err());
        assert!(Caller::Unrestricted.require(&[Role::Staff]).is_ok());
    }
}
