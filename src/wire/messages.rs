//! Encoding of the backend messages the proxy synthesizes itself (errors,
//! notices, authentication, key data). Everything else is relayed as the
//! server sent it.

use bytes::{BufMut, BytesMut};

/// Start a frame: tag and a length placeholder; returns the length offset.
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside a field would end it early on the client; drop them.
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
        }
    }
}

/// ErrorResponse ('E') or NoticeResponse ('N').
pub fn error(
    buf: &mut BytesMut,
    sev: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let at = begin(buf, if sev == Severity::Notice { b'N' } else { b'E' });
    for (field, value) in [
        (b'S', sev.as_str()),
        (b'V', sev.as_str()),
        (b'C', code),
        (b'M', message),
    ] {
        buf.put_u8(field);
        cstr(buf, value);
    }
    if let Some(d) = detail {
        buf.put_u8(b'D');
        cstr(buf, d);
    }
    if let Some(h) = hint {
        buf.put_u8(b'H');
        cstr(buf, h);
    }
    buf.put_u8(0);
    finish(buf, at);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.extend_from_slice(&[b'Z', 0, 0, 0, 5, status]);
}

pub fn auth_ok(buf: &mut BytesMut) {
    buf.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
}

pub fn auth_cleartext(buf: &mut BytesMut) {
    buf.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
}

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(10);
    for m in mechanisms {
        cstr(buf, m);
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// AuthenticationSASLContinue (11) or AuthenticationSASLFinal (12).
pub fn auth_sasl_data(buf: &mut BytesMut, code: i32, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(code);
    buf.extend_from_slice(data);
    finish(buf, at);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    cstr(buf, name);
    cstr(buf, value);
    finish(buf, at);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(buf, b'K');
    buf.put_i32(pid);
    buf.put_i32(secret);
    finish(buf, at);
}

/// NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_` options.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unsupported: &[&str]) {
    let at = begin(buf, b'v');
    buf.put_i32(minor);
    buf.put_i32(unsupported.len() as i32);
    for o in unsupported {
        cstr(buf, o);
    }
    finish(buf, at);
}

/// A simple Query ('Q') message.
pub fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    cstr(buf, sql);
    finish(buf, at);
}

/// A PasswordMessage-family frame ('p') with raw contents.
pub fn password_family(buf: &mut BytesMut, body: &[u8]) {
    let at = begin(buf, b'p');
    buf.extend_from_slice(body);
    finish(buf, at);
}

/// SASLInitialResponse.
pub fn sasl_initial(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    cstr(buf, mechanism);
    buf.put_i32(data.len() as i32);
    buf.extend_from_slice(data);
    finish(buf, at);
}

/// The proxy's own refusal statement. Sent upstream in place of a refused
/// statement so that PostgreSQL itself answers with ErrorResponse +
/// ReadyForQuery: responses stay in order in pipelines, and an open
/// transaction is aborted exactly as the client is told (DESIGN-NOTES 2).
pub fn refusal_sql(code: &str, message: &str) -> String {
    // Dollar-quote tag chosen so it cannot occur in our own messages, and
    // the message is also escaped as a SQL literal.
    let mut escaped = message.replace('\'', "''").replace('\0', "");
    while escaped.contains("$airlock_refusal$") {
        escaped = escaped.replace("$airlock_refusal$", "$ airlock_refusal$");
    }
    let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!(
        "DO $airlock_refusal$ BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = '{escaped}'; END $airlock_refusal$"
    )
}
