//! The AMQP 1.0 type encoding at the byte level: the length of an encoded value (so sections,
//! map entries and performatives can be cut out without decoding them), map framing, and the
//! handful of scalars the broker writes itself.
//!
//! Cutting instead of decoding is what keeps a message's application sections byte for byte as
//! the sender wrote them: the broker only rewrites what it owns (header, annotations).

use thiserror::Error;

/// A value whose encoding is not valid AMQP, or is cut short.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("malformed AMQP encoding: {0}")]
pub(crate) struct CodecError(pub(crate) String);

impl CodecError {
    fn new(what: impl Into<String>) -> Self {
        CodecError(what.into())
    }
}

/// Described values nest (a described value may describe a described value); the spec puts no
/// bound on it, a broker must.
const MAX_DEPTH: usize = 32;

/// How many bytes the encoded value at the start of `bytes` takes.
pub(crate) fn value_len(bytes: &[u8]) -> Result<usize, CodecError> {
    value_len_at(bytes, 0)
}

fn value_len_at(bytes: &[u8], depth: usize) -> Result<usize, CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::new("described values nested too deep"));
    }
    let code = *bytes
        .first()
        .ok_or_else(|| CodecError::new("a value is missing"))?;
    let len = match code {
        0x00 => {
            let descriptor = value_len_at(&bytes[1..], depth + 1)?;
            let rest = bytes.get(1 + descriptor..).unwrap_or_default();
            1 + descriptor + value_len_at(rest, depth + 1)?
        }
        0x40..=0x45 => 1,
        0x50..=0x56 => 2,
        0x60 | 0x61 => 3,
        0x70..=0x74 => 5,
        0x80..=0x84 => 9,
        0x94 | 0x98 => 17,
        0xa0 | 0xa1 | 0xa3 | 0xc0 | 0xc1 | 0xe0 => 2 + usize::from(byte_at(bytes, 1)?),
        0xb0 | 0xb1 | 0xb3 | 0xd0 | 0xd1 | 0xf0 => 5 + u32_at(bytes, 1)? as usize,
        other => return Err(CodecError::new(format!("unknown format code {other:#04x}"))),
    };
    if len > bytes.len() {
        return Err(CodecError::new(format!(
            "a value of {len} bytes is cut short at {}",
            bytes.len()
        )));
    }
    Ok(len)
}

fn byte_at(bytes: &[u8], at: usize) -> Result<u8, CodecError> {
    bytes
        .get(at)
        .copied()
        .ok_or_else(|| CodecError::new("a size is cut short"))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, CodecError> {
    let slice = bytes
        .get(at..at + 4)
        .ok_or_else(|| CodecError::new("a size is cut short"))?;
    let mut array = [0; 4];
    array.copy_from_slice(slice);
    Ok(u32::from_be_bytes(array))
}

/// Cuts a described value into its descriptor's numeric code (or symbol, lower-cased) and the
/// bytes of the described value. `bytes` must hold exactly one value.
pub(crate) fn split_described(bytes: &[u8]) -> Result<(Descriptor, &[u8]), CodecError> {
    if bytes.first() != Some(&0x00) {
        return Err(CodecError::new("expected a described value"));
    }
    let descriptor_len = value_len(&bytes[1..])?;
    let descriptor = &bytes[1..1 + descriptor_len];
    let value = &bytes[1 + descriptor_len..];
    Ok((Descriptor::read(descriptor)?, value))
}

/// A descriptor: a numeric code or a symbolic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Descriptor {
    Code(u64),
    Name(String),
}

impl Descriptor {
    fn read(bytes: &[u8]) -> Result<Descriptor, CodecError> {
        match bytes.first() {
            Some(0x44) => Ok(Descriptor::Code(0)),
            Some(0x53) => Ok(Descriptor::Code(u64::from(byte_at(bytes, 1)?))),
            Some(0x80) => {
                let slice = bytes
                    .get(1..9)
                    .ok_or_else(|| CodecError::new("a descriptor is cut short"))?;
                let mut array = [0; 8];
                array.copy_from_slice(slice);
                Ok(Descriptor::Code(u64::from_be_bytes(array)))
            }
            Some(0xa3 | 0xb3) => Ok(Descriptor::Name(read_text(bytes)?.to_ascii_lowercase())),
            _ => Err(CodecError::new(
                "a descriptor is neither a ulong nor a symbol",
            )),
        }
    }

    /// Whether this is the descriptor with `code`, or the AMQP `name` for it.
    pub(crate) fn is(&self, code: u64, name: &str) -> bool {
        match self {
            Descriptor::Code(value) => *value == code,
            Descriptor::Name(value) => value == name,
        }
    }
}

/// The text of an encoded string or symbol.
pub(crate) fn read_text(bytes: &[u8]) -> Result<&str, CodecError> {
    let body = match bytes.first() {
        Some(0xa1 | 0xa3) => {
            let len = usize::from(byte_at(bytes, 1)?);
            bytes.get(2..2 + len)
        }
        Some(0xb1 | 0xb3) => {
            let len = u32_at(bytes, 1)? as usize;
            bytes.get(5..5 + len)
        }
        _ => return Err(CodecError::new("expected a string or a symbol")),
    }
    .ok_or_else(|| CodecError::new("a string is cut short"))?;
    std::str::from_utf8(body).map_err(|_| CodecError::new("a string is not UTF-8"))
}

/// The encoded entries of a map (keys and values alternating), each as its own bytes; a null
/// reads as an empty map.
pub(crate) fn map_items(bytes: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    let items = compound_items(bytes, [0xc1, 0xd1], "a map")?;
    if items.len() % 2 != 0 {
        return Err(CodecError::new("a map has an odd number of items"));
    }
    Ok(items)
}

/// The encoded items of a list; a null or an empty list reads as no items.
pub(crate) fn list_items(bytes: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    if bytes.first() == Some(&0x45) {
        return Ok(Vec::new());
    }
    compound_items(bytes, [0xc0, 0xd0], "a list")
}

fn compound_items<'a>(
    bytes: &'a [u8],
    [small, large]: [u8; 2],
    what: &str,
) -> Result<Vec<&'a [u8]>, CodecError> {
    let code = bytes.first().copied();
    let (count, mut rest) = if code == Some(0x40) {
        return Ok(Vec::new());
    } else if code == Some(small) {
        let size = usize::from(byte_at(bytes, 1)?);
        let content = bytes
            .get(2..2 + size)
            .ok_or_else(|| CodecError::new(format!("{what} is cut short")))?;
        (
            usize::from(byte_at(bytes, 2)?),
            content.get(1..).unwrap_or_default(),
        )
    } else if code == Some(large) {
        let size = u32_at(bytes, 1)? as usize;
        let content = bytes
            .get(5..5 + size)
            .ok_or_else(|| CodecError::new(format!("{what} is cut short")))?;
        (
            u32_at(bytes, 5)? as usize,
            content.get(4..).unwrap_or_default(),
        )
    } else {
        return Err(CodecError::new(format!("expected {what}")));
    };
    // Every item takes at least one byte: a count above what is left is a lie.
    if count > rest.len() {
        return Err(CodecError::new(format!(
            "{what} claims more items than it holds"
        )));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let len = value_len(rest)?;
        items.push(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(items)
}

/// Encodes a map from already encoded items (keys and values alternating).
pub(crate) fn map<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    compound(0xc1, 0xd1, items)
}

/// Encodes a list from already encoded items.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    compound(0xc0, 0xd0, items)
}

fn compound<'a>(small: u8, large: u8, items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut count: usize = 0;
    let mut content = Vec::new();
    for item in items {
        content.extend_from_slice(item);
        count += 1;
    }
    let mut out = Vec::with_capacity(content.len() + 9);
    if content.len() < 255 && count < 256 {
        out.push(small);
        // The size counts the count byte too.
        out.push((content.len() + 1) as u8);
        out.push(count as u8);
    } else {
        out.push(large);
        out.extend_from_slice(&((content.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
    }
    out.extend_from_slice(&content);
    out
}

/// A described value with a small numeric descriptor (every section and performative).
pub(crate) fn described(code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 3);
    out.extend_from_slice(&[0x00, 0x53, code]);
    out.extend_from_slice(value);
    out
}

/// An encoded null.
pub(crate) const NULL: [u8; 1] = [0x40];

/// An encoded boolean.
pub(crate) fn boolean(value: bool) -> [u8; 1] {
    [if value { 0x41 } else { 0x42 }]
}

/// An encoded uint (always the 4-byte form: some clients read fixed widths).
pub(crate) fn uint(value: u32) -> Vec<u8> {
    let mut out = vec![0x70];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

/// An encoded int.
pub(crate) fn int(value: i32) -> Vec<u8> {
    let mut out = vec![0x71];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

/// An encoded long.
pub(crate) fn long(value: i64) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

/// An encoded timestamp (milliseconds since the Unix epoch).
pub(crate) fn timestamp(millis: i64) -> Vec<u8> {
    let mut out = vec![0x83];
    out.extend_from_slice(&millis.to_be_bytes());
    out
}

/// An encoded uuid (RFC byte order).
pub(crate) fn uuid(bytes: [u8; 16]) -> Vec<u8> {
    let mut out = vec![0x98];
    out.extend_from_slice(&bytes);
    out
}

/// An encoded string.
pub(crate) fn string(text: &str) -> Vec<u8> {
    variable(0xa1, 0xb1, text.as_bytes())
}

/// An encoded symbol.
pub(crate) fn symbol(text: &str) -> Vec<u8> {
    variable(0xa3, 0xb3, text.as_bytes())
}

/// An encoded binary.
#[cfg(test)]
pub(crate) fn binary(bytes: &[u8]) -> Vec<u8> {
    variable(0xa0, 0xb0, bytes)
}

fn variable(small: u8, large: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5);
    if bytes.len() < 256 {
        out.push(small);
        out.push(bytes.len() as u8);
    } else {
        out.push(large);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use serde_amqp::Value;
    use serde_amqp::primitives::{OrderedMap, Symbol, Timestamp};

    use super::*;

    #[test]
    fn lengths_match_what_the_codec_writes() {
        let mut map = OrderedMap::new();
        map.insert(Value::Symbol(Symbol::from("k")), Value::Long(-7));
        map.insert(
            Value::String("big".into()),
            Value::Binary(vec![1; 300].into()),
        );
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Uint(0),
            Value::Uint(70_000),
            Value::Ulong(1),
            Value::Int(-1),
            Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)),
            Value::String("x".repeat(300)),
            Value::List(vec![Value::Null, Value::Ubyte(3)]),
            Value::Map(map),
        ];
        for value in values {
            let mut bytes = serde_amqp::to_vec(&value).unwrap();
            let len = bytes.len();
            bytes.extend_from_slice(&[0x40, 0x40]);
            assert_eq!(value_len(&bytes).unwrap(), len, "{value:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for bytes in [
            &[][..],
            &[0x00],
            &[0x00, 0x53],
            &[0xa1, 10, b'a'],
            &[0xb0, 0xff, 0xff, 0xff, 0xff],
            &[0xff],
        ] {
            assert!(value_len(bytes).is_err(), "{bytes:?}");
            assert!(map_items(bytes).is_err(), "{bytes:?}");
        }
        // Well framed, but claiming four billion items.
        let liar = [0xd1, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(value_len(&liar).unwrap(), liar.len());
        assert!(map_items(&liar).is_err());
        assert!(list_items(&[0xc0, 3, 2, 0x40]).is_err(), "an item short");
        let mut deep = vec![0x00; 100];
        deep.push(0x40);
        assert!(value_len(&deep).is_err());
    }

    #[test]
    fn maps_round_trip_through_items() {
        let key = symbol("x-opt-sequence-number");
        let value = long(42);
        let encoded = map([key.as_slice(), value.as_slice()]);
        let decoded: Value = serde_amqp::from_slice(&encoded).unwrap();
        let Value::Map(decoded) = decoded else {
            panic!("not a map: {decoded:?}");
        };
        assert_eq!(
            decoded.get(&Value::Symbol(Symbol::from("x-opt-sequence-number"))),
            Some(&Value::Long(42))
        );
        let items = map_items(&encoded).unwrap();
        assert_eq!(items, [key.as_slice(), value.as_slice()]);
        let big: Vec<Vec<u8>> = (0..200).map(long).collect();
        let encoded = list(big.iter().map(Vec::as_slice));
        assert_eq!(value_len(&encoded).unwrap(), encoded.len());
        assert_eq!(read_text(&string("hé")).unwrap(), "hé");
        assert_eq!(read_text(&symbol(&"s".repeat(300))).unwrap().len(), 300);
    }

    #[test]
    fn descriptors_are_read_by_code_or_name() {
        let section = described(0x73, &list([NULL.as_slice()]));
        let (descriptor, value) = split_described(&section).unwrap();
        assert!(descriptor.is(0x73, "amqp:properties:list"));
        assert_eq!(value, list([NULL.as_slice()]).as_slice());
        let mut named = vec![0x00];
        named.extend(symbol("AMQP:Properties:List"));
        named.extend(list([]));
        let (descriptor, _) = split_described(&named).unwrap();
        assert!(descriptor.is(0x73, "amqp:properties:list"));
    }
}
