//! Link addresses as Service Bus clients write them, normalized to what they name.
//!
//! Python and the Rust crate put full URLs in source and target (`amqps://host:port/queue`),
//! .NET and Go bare paths; entity names match without regard to case, and so do the
//! `$DeadLetterQueue` and `$management` suffixes (the docs write them in lower case, the SDKs in
//! camel case).

use queue_core::SubQueue;

/// What an address names, before the entity is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// The claims-based security node, `$cbs`.
    Cbs,
    /// A queue (or its dead-letter queue): where messages go and come from.
    Entity(EntityPath),
    /// The request/response node of a queue (or of its dead-letter queue).
    Management(EntityPath),
}

/// An entity path: the entity's name as written, and the sub-queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityPath {
    pub(crate) name: String,
    pub(crate) sub_queue: SubQueue,
}

const MANAGEMENT: &str = "$management";
const DEAD_LETTER_QUEUE: &str = "$deadletterqueue";
const CBS: &str = "$cbs";

impl Address {
    /// Normalizes an address: scheme, host and port are dropped, then the suffixes read.
    /// `None` when nothing is left to name.
    pub(crate) fn parse(address: &str) -> Option<Address> {
        let path = strip_authority(address.trim()).trim_matches('/');
        if path.is_empty() {
            return None;
        }
        if path.eq_ignore_ascii_case(CBS) {
            return Some(Address::Cbs);
        }
        let (path, management) = match strip_suffix(path, MANAGEMENT) {
            Some(rest) => (rest, true),
            None => (path, false),
        };
        let (name, sub_queue) = match strip_suffix(path, DEAD_LETTER_QUEUE) {
            Some(rest) => (rest, SubQueue::DeadLetter),
            None => (path, SubQueue::Main),
        };
        if name.is_empty() {
            return None;
        }
        let entity = EntityPath {
            name: name.to_owned(),
            sub_queue,
        };
        Some(if management {
            Address::Management(entity)
        } else {
            Address::Entity(entity)
        })
    }
}

/// `amqps://host:port/path` → `path`; a bare path is kept.
fn strip_authority(address: &str) -> &str {
    match address.find("://") {
        Some(scheme_end) => {
            let rest = &address[scheme_end + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => address,
    }
}

/// `path/suffix` (suffix compared without case) → `path`.
fn strip_suffix<'a>(path: &'a str, suffix: &str) -> Option<&'a str> {
    let split = path.len().checked_sub(suffix.len() + 1)?;
    let (rest, tail) = path.split_at(split);
    let tail = tail.strip_prefix('/')?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| rest.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str, sub_queue: SubQueue) -> EntityPath {
        EntityPath {
            name: name.to_owned(),
            sub_queue,
        }
    }

    #[test]
    fn urls_and_paths_name_the_same_entity() {
        for address in [
            "orders",
            "/orders",
            "amqps://127.0.0.1:5672/orders",
            "amqp://localhost/orders",
            "sb://ns.servicebus.windows.net/orders/",
        ] {
            assert_eq!(
                Address::parse(address),
                Some(Address::Entity(entity("orders", SubQueue::Main))),
                "{address}"
            );
        }
    }

    #[test]
    fn suffixes_are_read_without_case() {
        assert_eq!(
            Address::parse("amqps://h:1/orders/$DeadLetterQueue"),
            Some(Address::Entity(entity("orders", SubQueue::DeadLetter)))
        );
        assert_eq!(
            Address::parse("orders/$deadletterqueue/$Management"),
            Some(Address::Management(entity("orders", SubQueue::DeadLetter)))
        );
        assert_eq!(
            Address::parse("orders/$management"),
            Some(Address::Management(entity("orders", SubQueue::Main)))
        );
        assert_eq!(Address::parse("$cbs"), Some(Address::Cbs));
        assert_eq!(Address::parse("amqp://h/$CBS"), Some(Address::Cbs));
    }

    #[test]
    fn nothing_named_is_none() {
        for address in ["", "/", "amqps://host", "amqps://host/", "amqps://host//"] {
            assert_eq!(Address::parse(address), None, "{address}");
        }
    }
}
