//! Public-key verification: RS256 and ES256 keys from a PEM file and from a
//! JWKS file, key selection by `kid`, and the algorithm-confusion attack
//! (an HS256 token "signed" with the public key) refused.
//!
//! `tests/fixtures/*_private.pem` are throwaway keys made for these tests
//! only; the matching `*_public.pem` are what a deployment would configure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::path::PathBuf;

use checkout_http::{AuthConfig, AuthConfigError, AuthError, AuthMode, Authenticator, Role};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn rsa_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap()
}

fn ec_private() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).unwrap()).unwrap()
}

fn claims(role: &str) -> Value {
    let t = NOW.unix_timestamp();
    json!({"sub": "staff-9", "role": role, "iss": "bookverse", "aud": "bookverse-checkout", "exp": t + 300})
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims("staff"), key).unwrap()
}

fn with(f: impl FnOnce(&mut AuthConfig)) -> Result<Authenticator, AuthConfigError> {
    let mut c = AuthConfig {
        mode: AuthMode::Jwt,
        ..AuthConfig::default()
    };
    f(&mut c);
    Authenticator::new(&c)
}

#[test]
fn rs256_and_es256_from_pem_files() {
    let rsa = with(|c| c.public_key_pem = Some(fixture("rsa_public.pem"))).unwrap();
    let p = rsa
        .verify(&token(Algorithm::RS256, None, &rsa_private()), NOW)
        .unwrap();
    assert_eq!((p.subject.as_str(), p.role), ("staff-9", Role::Staff));
    // An ES256 token finds no key of its algorithm.
    assert_eq!(
        rsa.verify(&token(Algorithm::ES256, None, &ec_private()), NOW),
        Err(AuthError::UnknownKey)
    );

    let ec = with(|c| c.public_key_pem = Some(fixture("ec_public.pem"))).unwrap();
    assert!(
        ec.verify(&token(Algorithm::ES256, None, &ec_private()), NOW)
            .is_ok()
    );
    assert!(matches!(
        with(|c| c.public_key_pem = Some(fixture("README.md"))),
        Err(AuthConfigError::BadPem { .. })
    ));
}

#[test]
fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    // The classic confusion: sign HS256 with the bytes of the public key,
    // hoping the verifier uses the same bytes as an HMAC secret.
    let auth = with(|c| c.public_key_pem = Some(fixture("rsa_public.pem"))).unwrap();
    let public = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let forged = token(Algorithm::HS256, None, &EncodingKey::from_secret(&public));
    assert_eq!(auth.verify(&forged, NOW), Err(AuthError::UnknownKey));
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_algorithm() {
    let mut rsa = Jwk::from_encoding_key(&rsa_private(), Algorithm::RS256).unwrap();
    rsa.common.key_id = Some("rsa-2026".into());
    let mut ec = Jwk::from_encoding_key(&ec_private(), Algorithm::ES256).unwrap();
    ec.common.key_id = Some("ec-2026".into());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&JwkSet {
            keys: vec![rsa, ec],
        })
        .unwrap(),
    )
    .unwrap();
    let auth = with(|c| c.jwks_file = Some(path.clone())).unwrap();

    assert!(
        auth.verify(
            &token(Algorithm::RS256, Some("rsa-2026"), &rsa_private()),
            NOW
        )
        .is_ok()
    );
    assert!(
        auth.verify(
            &token(Algorithm::ES256, Some("ec-2026"), &ec_private()),
            NOW
        )
        .is_ok()
    );
    // No kid: every key of the token's algorithm is tried.
    assert!(
        auth.verify(&token(Algorithm::ES256, None, &ec_private()), NOW)
            .is_ok()
    );
    // A rotated-out kid, or a kid naming a key of another algorithm.
    assert_eq!(
        auth.verify(
            &token(Algorithm::RS256, Some("rsa-2025"), &rsa_private()),
            NOW
        ),
        Err(AuthError::UnknownKey)
    );
    assert_eq!(
        auth.verify(
            &token(Algorithm::RS256, Some("ec-2026"), &rsa_private()),
            NOW
        ),
        Err(AuthError::UnknownKey)
    );
    // The right kid, the wrong signer.
    let other =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_other_private.pem")).unwrap()).unwrap();
    assert_eq!(
        auth.verify(&token(Algorithm::ES256, Some("ec-2026"), &other), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn a_jwks_without_signing_keys_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}).to_string(),
    )
    .unwrap();
    let err = with(|c| c.jwks_file = Some(path.clone())).unwrap_err();
    assert!(err.to_string().contains("auth.jwks_file"), "{err}");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        with(|c| c.jwks_file = Some(path.clone())),
        Err(AuthConfigError::BadJwks { .. })
    ));
}
