//! The domain stays pure: no async runtime, ORM, web or broker crate may
//! reach it, directly or through another crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::HashSet;

use cargo_metadata::MetadataCommand;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "futures",
    "async-trait",
    "sea-orm",
    "sqlx",
    "diesel",
    "actix-web",
    "axum",
    "hyper",
    "reqwest",
    "rdkafka",
    "mockall",
];

#[test]
fn checkout_domain_depends_on_no_runtime_orm_or_web_crate() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let metadata = MetadataCommand::new()
        .manifest_path(manifest)
        .exec()
        .unwrap();
    let resolve = metadata.resolve.as_ref().unwrap();
    let root = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "checkout-domain")
        .unwrap();
    let node_of = |id| resolve.nodes.iter().find(|n| &n.id == id).unwrap();

    // Walk normal (non-dev, non-build) dependencies from the domain crate.
    let mut seen = HashSet::new();
    let mut stack = vec![&root.id];
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        for dep in &node_of(id).deps {
            if dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == cargo_metadata::DependencyKind::Normal)
            {
                stack.push(&dep.pkg);
            }
        }
    }
    let names: Vec<String> = metadata
        .packages
        .iter()
        .filter(|p| seen.contains(&p.id))
        .map(|p| p.name.to_string())
        .collect();
    for forbidden in FORBIDDEN {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "checkout-domain depends on {forbidden}: {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n == "rust_decimal"),
        "the walk found the real dependencies: {names:?}"
    );
}
