//! What the benches share: the runtime they run on and the keys they seal with.

#![allow(dead_code, unreachable_pub, clippy::expect_used)]

use std::sync::Arc;

use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
use queue_runtime::keys::{KeyRing, StaticKeys};
use queue_runtime::security::Security;

/// A multi-threaded runtime of two workers (the benchmark machine's two cores), for the
/// in-process benches.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sealing with one fresh primary key behind a static key ring (AES-256-GCM, the default suite).
pub fn security() -> Security {
    let keyset = Keyset::new([Key::new(
        KeyId::new("bench").expect("an id"),
        KeyMaterial::generate().expect("a key"),
        KeyState::Primary,
    )])
    .expect("a keyset");
    Security::new(KeyRing::new(Arc::new(StaticKeys::new(keyset))))
}
