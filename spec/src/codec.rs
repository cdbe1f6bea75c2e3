//! The canonical binary encoding (SPEC.md §3): big-endian fixed-width integers, length-
//! prefixed byte strings with a bound per field, one-byte enum tags, no trailing bytes.
//!
//! Owns the bounded reader and the writer. Must never allocate more than the input's length
//! on the say-so of a length prefix, and never panic on any input: every read is checked.

use thiserror::Error;

/// Largest encoded object any decoder accepts (a receipt proof with many headers is the
/// largest object; blobs are never decoded through this path).
pub const MAX_OBJECT_BYTES: usize = 1 << 20;

/// Why bytes are not a valid encoding. `code()` gives the stable name used in test vectors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("unexpected end of input reading {field}: needed {needed} bytes, {remaining} left")]
    UnexpectedEnd {
        /// Field being read.
        field: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes left over after a complete object.
    #[error("{count} trailing bytes after {object}")]
    TrailingBytes {
        /// Object decoded.
        object: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// The object's version byte is not one this implementation speaks.
    #[error("unknown {object} version {version}")]
    UnknownVersion {
        /// Object.
        object: &'static str,
        /// Version byte found.
        version: u8,
    },
    /// A length or count above the field's bound.
    #[error("{field} is {len}, above its bound {max}")]
    TooLong {
        /// Field.
        field: &'static str,
        /// Length or count found.
        len: usize,
        /// Bound.
        max: usize,
    },
    /// An enum tag (or option flag) with no meaning.
    #[error("invalid tag {tag} for {field}")]
    InvalidTag {
        /// Field.
        field: &'static str,
        /// Tag byte found.
        tag: u8,
    },
    /// A value outside the field's domain.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// Field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A 32-byte string that is not an x-only secp256k1 public key.
    #[error("{field} is not a valid x-only public key")]
    InvalidPublicKey {
        /// Field.
        field: &'static str,
    },
    /// The whole input is larger than any object may be.
    #[error("input of {len} bytes exceeds the {max}-byte object limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

impl DecodeError {
    /// Stable snake-case name of the error kind, as written in `spec/vectors/`.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::UnexpectedEnd { .. } => "unexpected_end",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::UnknownVersion { .. } => "unknown_version",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::InvalidTag { .. } => "invalid_tag",
            DecodeError::InvalidValue { .. } => "invalid_value",
            DecodeError::InvalidPublicKey { .. } => "invalid_public_key",
            DecodeError::TooLarge { .. } => "too_large",
        }
    }
}

/// Appends canonical encodings to a buffer.
#[derive(Default, Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Raw bytes with no length prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Bytes with a one-byte length prefix. Callers guarantee `v.len() <= 255` through the
    /// type's own bound; a longer value is a programming error caught in debug builds.
    pub fn bytes_u8(&mut self, v: &[u8]) -> &mut Self {
        debug_assert!(v.len() <= u8::MAX as usize);
        self.u8(v.len() as u8).raw(v)
    }

    /// Bytes with a four-byte big-endian length prefix.
    pub fn bytes_u32(&mut self, v: &[u8]) -> &mut Self {
        debug_assert!(v.len() <= u32::MAX as usize);
        self.u32(v.len() as u32).raw(v)
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The finished encoding.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::UnexpectedEnd { field, needed: n, remaining: self.remaining() })?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::UnexpectedEnd {
            field,
            needed: n,
            remaining: self.remaining(),
        })?;
        self.pos = end;
        Ok(out)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// Big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Bytes behind a one-byte length, at most `max` long.
    pub fn bytes_u8(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u8(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(field, len)
    }

    /// Bytes behind a four-byte length, at most `max` long. The bound is checked before
    /// anything is read, so a forged length costs nothing.
    pub fn bytes_u32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(field, len)
    }

    /// A count, checked against `max` and against what the remaining input could possibly
    /// hold (`min_item_size` bytes per item), so no decoder pre-allocates on a lie.
    pub fn count(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
        min_item_size: usize,
    ) -> Result<usize, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let needed = len.saturating_mul(min_item_size);
        if needed > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { field, needed, remaining: self.remaining() });
        }
        Ok(len)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, object: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { object, count }),
        }
    }
}

/// A type with a canonical encoding.
pub trait Encode {
    /// Appends the canonical encoding.
    fn encode(&self, w: &mut Writer);

    /// The canonical encoding as a vector (allocated once, at its exact size).
    fn to_bytes(&self) -> Vec<u8> {
        with_encoding(self, <[u8]>::to_vec)
    }
}

/// Largest buffer a thread keeps for [`with_encoding`] between calls; a larger encoding's
/// buffer is freed after use, so a rare big object does not pin its size per thread.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Calls `f` with `v`'s canonical encoding, built in a buffer this thread reuses: hashing
/// an object (its id) or copying its encoding out then allocates nothing, where growing a
/// fresh vector reallocated about log2(size) times (a 1.6 KB reveal: 9).
pub fn with_encoding<T: Encode + ?Sized, R>(v: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut w = Writer { buf: SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default() };
    w.buf.clear();
    v.encode(&mut w);
    let out = f(&w.buf);
    if w.buf.capacity() <= SCRATCH_KEEP {
        // Reentrant calls (none today) would each find an empty buffer: `take` left one.
        let _ = SCRATCH.try_with(|s| s.set(w.buf));
    }
    out
}

/// A type decodable from its canonical encoding.
pub trait Decode: Sized {
    /// Name used in errors.
    const NAME: &'static str;

    /// Reads one value from `r`, leaving the rest.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes exactly one value from `bytes` (no trailing bytes, size bounded).
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_OBJECT_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_OBJECT_BYTES });
        }
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish(Self::NAME)?;
        Ok(v)
    }
}

/// Reads and checks an object's leading version byte.
pub fn expect_version(r: &mut Reader<'_>, object: &'static str, known: u8) -> Result<(), DecodeError> {
    let version = r.u8("version")?;
    if version != known {
        return Err(DecodeError::UnknownVersion { object, version });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a given length, encoded with a u32 length prefix.
    struct Blob(Vec<u8>);
    impl Encode for Blob {
        fn encode(&self, w: &mut Writer) {
            w.bytes_u32(&self.0);
        }
    }

    fn fresh(b: &Blob) -> Vec<u8> {
        let mut w = Writer::new();
        b.encode(&mut w);
        w.into_bytes()
    }

    #[test]
    fn reused_scratch_buffer_encodes_like_a_fresh_writer() {
        // Large (not kept), small after large, small after small, empty, nested use.
        let sizes = [SCRATCH_KEEP * 2, 3, 1600, 0, 70_000, 5];
        for n in sizes {
            let b = Blob((0..n).map(|i| (i % 251) as u8).collect());
            assert_eq!(b.to_bytes(), fresh(&b), "{n} bytes");
            let inner = Blob(vec![9; n / 2]);
            let (outer, nested) = with_encoding(&b, |o| (o.to_vec(), inner.to_bytes()));
            assert_eq!(outer, fresh(&b));
            assert_eq!(nested, fresh(&inner));
        }
        let kept = SCRATCH.with(|s| {
            let v = s.take();
            let c = v.capacity();
            s.set(v);
            c
        });
        assert!(kept <= SCRATCH_KEEP, "a thread keeps at most SCRATCH_KEEP bytes, kept {kept}");
    }

    #[test]
    fn forged_length_is_refused_before_reading() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.bytes_u32("x", 10).unwrap_err().code(), "too_long");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.bytes_u32("x", usize::MAX).unwrap_err().code(), "unexpected_end");
    }

    #[test]
    fn count_bounded_by_remaining_input() {
        let bytes = [0u8; 10];
        let mut r = Reader::new(&bytes);
        assert!(r.count("c", 1000, 100_000, 32).is_err());
        assert_eq!(r.count("c", 0, 10, 32), Ok(0));
    }
}
