//! CLI side of the admin API: `pg-airlock approvals list|show|approve|deny`.
//!
//! A deliberately tiny HTTP/1.1 client over a tokio `TcpStream` (one request
//! per connection, `Connection: close`), so the CLI pulls in no HTTP client
//! crate. Plain `http://` only: the admin port is meant to be reached on
//! loopback or through a tunnel; for TLS put a reverse proxy in front and use
//! curl.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whole-exchange limit: the admin API answers from memory.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response accepted (a long pending list with big SQL texts).
const MAX_RESPONSE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("admin url {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("admin api at {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("admin api at {addr}: no answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("admin api at {addr}: malformed response: {why}")]
    Malformed { addr: String, why: String },
    #[error("admin api refused ({status}): {message}")]
    Api { status: u16, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `GET /approvals`: waiting requests, pretty JSON.
pub async fn cli_list(admin_url: &str, token: &str) -> Result<String> {
    call(admin_url, "GET", "/approvals", token, None).await
}

/// `GET /approvals/{id}`.
pub async fn cli_show(admin_url: &str, token: &str, id: &str) -> Result<String> {
    call(
        admin_url,
        "GET",
        &format!("/approvals/{}", path_segment(admin_url, id)?),
        token,
        None,
    )
    .await
}

/// `POST /approvals/{id}/approve`.
pub async fn cli_approve(admin_url: &str, token: &str, id: &str) -> Result<String> {
    call(
        admin_url,
        "POST",
        &format!("/approvals/{}/approve", path_segment(admin_url, id)?),
        token,
        Some("{}".into()),
    )
    .await
}

/// `POST /approvals/{id}/deny` with an optional reason.
pub async fn cli_deny(
    admin_url: &str,
    token: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<String> {
    let body = serde_json::json!({ "reason": reason }).to_string();
    call(
        admin_url,
        "POST",
        &format!("/approvals/{}/deny", path_segment(admin_url, id)?),
        token,
        Some(body),
    )
    .await
}

/// Request ids are hex; anything else would change the path.
fn path_segment<'a>(url: &str, id: &'a str) -> Result<&'a str> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(Error::BadUrl {
            url: url.to_string(),
            why: "request id must be alphanumeric",
        })
    }
}

/// Splits `http://host:port[/prefix]` into (`host:port`, prefix without trailing `/`).
fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = |why| Error::BadUrl {
        url: url.to_string(),
        why,
    };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad(if url.starts_with("https://") {
            "https is not supported by the built-in client; use http on loopback"
        } else {
            "expected http://host:port"
        })
    })?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("expected http://host:port"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, prefix.to_string()))
}

async fn call(
    admin_url: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<String> {
    let (status, body) = request(admin_url, method, path, Some(token), body).await?;
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    if (200..300).contains(&status) {
        Ok(match json {
            Some(v) => serde_json::to_string_pretty(&v).unwrap_or(body),
            None => body,
        })
    } else {
        let message = json
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .map(str::to_string)
            .unwrap_or(body);
        Err(Error::Api { status, message })
    }
}

/// One HTTP/1.1 exchange; returns (status, body text).
pub(crate) async fn request(
    admin_url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String)> {
    let (addr, prefix) = parse_url(admin_url)?;
    if token.is_some_and(|t| t.contains(['\r', '\n'])) {
        return Err(Error::BadUrl {
            url: admin_url.to_string(),
            why: "token contains a line break",
        });
    }
    let exchange = async {
        let io = |source| Error::Io {
            addr: addr.clone(),
            source,
        };
        let mut stream = TcpStream::connect(&addr).await.map_err(io)?;
        let body = body.unwrap_or_default();
        let mut req = format!(
            "{method} {prefix}{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(io)?;
        if buf.len() > MAX_RESPONSE {
            return Err(Error::Malformed {
                addr: addr.clone(),
                why: format!("response larger than {MAX_RESPONSE} bytes"),
            });
        }
        parse_response(&buf).map_err(|why| Error::Malformed {
            addr: addr.clone(),
            why,
        })
    };
    crate::timers::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Timeout { addr: addr.clone() })?
}

fn parse_response(buf: &[u8]) -> std::result::Result<(u16, String), String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
        }
    }
    let raw = &buf[end + 4..];
    let body = if chunked {
        dechunk(raw)?
    } else if let Some(n) = length {
        raw.get(..n)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        raw.to_vec()
    };
    Ok((
        status,
        String::from_utf8(body).map_err(|_| "body is not UTF-8")?,
    ))
}

fn dechunk(mut raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&raw[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).ok_or("truncated chunk")?);
        raw = raw.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:9187").unwrap(),
            ("127.0.0.1:9187".into(), "".into())
        );
        assert_eq!(
            parse_url("http://localhost/admin/").unwrap(),
            ("localhost:80".into(), "/admin".into())
        );
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("http://user@x:1").is_err());
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r, (200, "{}".into()));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r, (404, "abcde".into()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_err());
        assert!(path_segment("u", "../x").is_err());
    }
}
