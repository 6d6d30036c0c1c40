#![doc = include_str!("../README.md")]

pub mod document;
mod error;
mod key_ring;
mod source;

pub use document::{DOCUMENT_VERSION, KeysetDocument, generate_keyset_file};
pub use error::{KeyError, Result};
pub use key_ring::{KeyRing, KeyRingOptions};
pub use source::{EnvKeys, FileKeys, KeySource, StaticKeys};
