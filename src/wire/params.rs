//! A Bind's parameter values, kept as the client sent them.
//!
//! Every Bind carries values, but few readers ever look at them: the audit
//! trail under `log_parameters`, the reviewers of a held statement and the
//! approval's binding hash. Keeping the Bind's own bytes (one copy) and
//! rendering them only for those spares every other statement a string per
//! value and two vectors, built at the Bind and freed at its record.

use std::sync::Arc;

use super::frame::{Body, FrameError};

/// The values of one or more Binds (a segment's Executes, in order): their
/// wire sections back to back, each the format codes then the values, as
/// [`Params::read`] checked them.
#[derive(Clone, Default)]
pub struct Params {
    /// `None`: no values (nothing allocated, nothing shared).
    raw: Option<Arc<[u8]>>,
    count: usize,
}

impl Params {
    /// The values section of a Bind, `b` positioned after the statement
    /// name; leaves `b` after the values (before the result formats).
    pub fn read(b: &mut Body<'_>) -> Result<Params, FrameError> {
        let start = b.rest();
        let nfmt = b.i16()?.max(0);
        for _ in 0..nfmt {
            b.i16()?;
        }
        let n = b.i16()?.max(0) as usize;
        for _ in 0..n {
            let len = b.i32()?;
            if len >= 0 {
                b.bytes(len as usize)?;
            }
        }
        if n == 0 {
            return Ok(Params::default());
        }
        let used = start.len() - b.rest().len();
        Ok(Params {
            raw: Some(Arc::from(&start[..used])),
            count: n,
        })
    }

    /// How many values (NULLs included).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The same values, shared (or both none): a portal executed again.
    pub fn same(&self, other: &Params) -> bool {
        match (&self.raw, &other.raw) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// All values in order, concatenated (a segment of several Executes).
    pub fn concat<'a>(parts: impl Iterator<Item = &'a Params>) -> Params {
        let mut raw = Vec::new();
        let mut count = 0;
        for p in parts {
            if let Some(r) = &p.raw {
                raw.extend_from_slice(r);
                count += p.count;
            }
        }
        if count == 0 {
            return Params::default();
        }
        Params {
            raw: Some(raw.into()),
            count,
        }
    }

    /// The values for a human reviewer: text-format values as text
    /// (invalid UTF-8 replaced), binary ones as `\x` hex, NULL as `None`.
    pub fn render(&self) -> Vec<Option<String>> {
        let mut out = Vec::with_capacity(self.count);
        let mut rest: &[u8] = self.raw.as_deref().unwrap_or_default();
        // `read` checked every section, so a short read cannot happen;
        // were it to, the values so far are what there is.
        while !rest.is_empty() && render_section(&mut rest, &mut out).is_some() {}
        out
    }
}

fn render_section(rest: &mut &[u8], out: &mut Vec<Option<String>>) -> Option<()> {
    let nfmt = usize::try_from(take_i16(rest)?).unwrap_or(0);
    let formats = take(rest, nfmt * 2)?;
    let format = |i: usize| {
        let at = match nfmt {
            0 => return 0,
            1 => 0,
            _ if i < nfmt => i * 2,
            _ => return 0,
        };
        i16::from_be_bytes([formats[at], formats[at + 1]])
    };
    let n = usize::try_from(take_i16(rest)?).unwrap_or(0);
    for i in 0..n {
        let len = i32::from_be_bytes(take(rest, 4)?.try_into().ok()?);
        let Ok(len) = usize::try_from(len) else {
            out.push(None);
            continue;
        };
        let v = take(rest, len)?;
        out.push(Some(if format(i) == 0 {
            String::from_utf8_lossy(v).into_owned()
        } else {
            format!("\\x{}", hex::encode(v))
        }));
    }
    Some(())
}

fn take_i16(rest: &mut &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(take(rest, 2)?.try_into().ok()?))
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bind frame (portal "", statement "") with these format codes and
    /// values, and one result format after them.
    fn bind(formats: &[i16], values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = vec![0u8, 0u8];
        body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
        for f in formats {
            body.extend_from_slice(&f.to_be_bytes());
        }
        body.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
            }
        }
        body.extend_from_slice(&[0, 1, 0, 1]);
        let mut frame = vec![b'B'];
        frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    fn read(frame: &[u8]) -> Result<Params, FrameError> {
        let mut b = Body::new(frame);
        b.name()?;
        b.name()?;
        let p = Params::read(&mut b)?;
        assert_eq!(b.rest(), [0, 1, 0, 1], "left before the result formats");
        Ok(p)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn values_render_by_their_format() {
        let text: &[u8] = b"42";
        let bad: &[u8] = b"a\xffb";
        let bin: &[u8] = &[0, 1, 0xfe];
        // No format codes: all text.
        let p = read(&bind(&[], &[Some(text), None, Some(bad)])).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.render(), [some("42"), None, some("a\u{fffd}b")]);
        // One code: for every value.
        let p = read(&bind(&[1], &[Some(bin), Some(text)])).unwrap();
        assert_eq!(p.render(), [some("\\x0001fe"), some("\\x3432")]);
        // One code per value.
        let p = read(&bind(&[0, 1, 0], &[Some(text), Some(bin), None])).unwrap();
        assert_eq!(p.render(), [some("42"), some("\\x0001fe"), None]);
    }

    #[test]
    fn no_values_hold_nothing() {
        let p = read(&bind(&[1], &[])).unwrap();
        assert!(p.is_empty() && p.raw.is_none());
        assert!(p.render().is_empty());
        assert!(p.same(&Params::default()));
    }

    #[test]
    fn truncated_values_are_an_error() {
        let mut frame = bind(&[], &[Some(b"12345")]);
        // Cut into the value: the length says 5, 2 bytes remain.
        frame.truncate(frame.len() - 4 - 3);
        let len = (frame.len() - 1) as i32;
        frame[1..5].copy_from_slice(&len.to_be_bytes());
        let mut b = Body::new(&frame);
        b.name().unwrap();
        b.name().unwrap();
        assert!(Params::read(&mut b).is_err());
    }

    #[test]
    fn concatenated_sections_render_in_order_with_their_own_formats() {
        let a = read(&bind(&[1], &[Some(&[7])])).unwrap();
        let b = read(&bind(&[], &[Some(b"x"), None])).unwrap();
        let none = Params::default();
        let all = Params::concat([&a, &none, &b, &a].into_iter());
        assert_eq!(all.len(), 4);
        assert_eq!(
            all.render(),
            [some("\\x07"), some("x"), None, some("\\x07")]
        );
        assert!(!all.same(&a));
        assert!(a.same(&a.clone()));
        assert!(Params::concat([&none, &none].into_iter()).raw.is_none());
    }
}
