//! Framing of the Postgres v3 protocol after startup: a type byte and a
//! big-endian i32 length that counts itself but not the type byte.
//!
//! The relay works on borrowed slices of its read buffer: a frame is
//! located, inspected in place if policy needs it, and the bytes are
//! forwarded untouched. Nothing here allocates.

use std::fmt;

/// Header of a frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Total size on the wire: 1 (tag) + length field value.
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed message {tag}: length field {len} is less than 4")]
    BadLength { tag: Tag, len: i64 },
    #[error("message {tag} of {len} bytes is over the {max}-byte limit")]
    TooLarge { tag: Tag, len: usize, max: usize },
    #[error("malformed message {tag}: {what}")]
    BadBody { tag: Tag, what: &'static str },
}

/// A message type byte, printed readably in errors and logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Read the header at the start of `buf`, if 5 bytes are there.
#[inline]
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag: Tag(buf[0]),
            len: len as i64,
        });
    }
    let len = len as usize;
    if len - 4 > max {
        return Err(FrameError::TooLarge {
            tag: Tag(buf[0]),
            len,
            max,
        });
    }
    Ok(Some(Header {
        tag: buf[0],
        total: len + 1,
    }))
}

/// A cursor over a frame body for the few messages the proxy decodes.
pub struct Body<'a> {
    tag: u8,
    buf: &'a [u8],
}

impl<'a> Body<'a> {
    /// `frame` is the whole frame, header included.
    pub fn new(frame: &'a [u8]) -> Body<'a> {
        Body {
            tag: frame[0],
            buf: &frame[5..],
        }
    }

    fn bad(&self, what: &'static str) -> FrameError {
        FrameError::BadBody {
            tag: Tag(self.tag),
            what,
        }
    }

    /// A NUL-terminated string, as raw bytes (no UTF-8 check).
    pub fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        // Every Query and Parse text is searched for its terminator: a
        // word-at-a-time search, not a byte loop (about 5 instructions per
        // byte of SQL).
        let end =
            memchr::memchr(0, self.buf).ok_or_else(|| self.bad("missing string terminator"))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn str(&mut self) -> Result<&'a str, FrameError> {
        let b = self.cstr()?;
        text(b).ok_or_else(|| self.bad("string is not valid UTF-8"))
    }

    /// A prepared-statement or portal name. PostgreSQL keys both on their
    /// first 63 bytes (NAMEDATALEN - 1), so two longer names can be one
    /// object to the server and two to the proxy's model: refused.
    pub fn name(&mut self) -> Result<&'a str, FrameError> {
        let s = self.str()?;
        if s.len() > 63 {
            return Err(self.bad("statement or portal name over 63 bytes"));
        }
        Ok(s)
    }

    pub fn i16(&mut self) -> Result<i16, FrameError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, FrameError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(self.bad("message shorter than its contents"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// `b` as text, if it is UTF-8. Nearly every SQL text is ASCII, which is
/// checked sixteen bytes at a time (SSE2, the x86_64 baseline); anything
/// else goes through `std::str::from_utf8`, which is about twice the work
/// per byte of ASCII.
pub fn text(b: &[u8]) -> Option<&str> {
    if is_ascii(b) {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
}

fn is_ascii(b: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8};
        let mut chunks = b.chunks_exact(16);
        for c in &mut chunks {
            // SAFETY: SSE2 is part of the x86_64 baseline; the unaligned
            // load reads exactly the sixteen bytes of `c`. A byte's top bit
            // set (movemask) is a byte outside ASCII.
            let high = unsafe { _mm_movemask_epi8(_mm_loadu_si128(c.as_ptr().cast::<__m128i>())) };
            if high != 0 {
                return false;
            }
        }
        chunks.remainder().is_ascii()
    }
    #[cfg(not(target_arch = "x86_64"))]
    b.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every offset of the vector part and the tail,
    /// against `std::str::from_utf8`.
    #[test]
    fn text_agrees_with_std() {
        crate::testing::each_byte_at_each_offset(&[1, 15, 16, 17, 33], b'x', |b, at, byte| {
            assert_eq!(
                text(b),
                std::str::from_utf8(b).ok(),
                "len {} at {at} byte {byte:#x}",
                b.len()
            );
        });
        let mixed = "SELECT 'Ünïcode ✓' FROM t WHERE a = 1 -- ok".as_bytes();
        assert_eq!(text(mixed), std::str::from_utf8(mixed).ok());
        let cut = &mixed[..mixed.len() - 30];
        assert_eq!(text(cut), std::str::from_utf8(cut).ok());
    }

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(header(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(
            header(b"Q\0\0\0\x05x", 100),
            Ok(Some(Header {
                tag: b'Q',
                total: 6
            }))
        );
    }

    #[test]
    fn header_rejects_bad_and_huge_lengths() {
        assert!(matches!(
            header(b"Q\0\0\0\x03", 100),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            header(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            header(b"Q\0\0\x10\0", 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn body_reads_strings_and_ints() {
        let frame = b"P\0\0\0\x10s1\0select\0\0\x01";
        let mut b = Body::new(frame);
        assert_eq!(b.cstr().unwrap(), b"s1");
        assert_eq!(b.str().unwrap(), "select");
        assert_eq!(b.i16().unwrap(), 1);
        assert!(b.i32().is_err());
        assert!(Body::new(b"Q\0\0\0\x05x").cstr().is_err());
    }
}
