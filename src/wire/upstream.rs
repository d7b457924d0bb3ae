//! The proxy's own connection to the real database: TCP (+ optional TLS),
//! a StartupMessage with the proxy's credentials (client SCRAM cannot be
//! relayed), authentication (trust, cleartext, md5, SCRAM-SHA-256), and
//! the server's ParameterStatus / BackendKeyData collected for the client.

use super::frame::Body;
use super::io::{ReadError, read_frame};
use super::messages;
use crate::config::{Secret, Upstream, UpstreamTls};
use bytes::{BufMut, BytesMut};
use pgwire::api::auth::sasl::scram::ScramClientAuth;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("upstream {addr} did not answer within {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("upstream {addr} refused TLS and upstream.tls is {mode:?}")]
    TlsRefused { addr: String, mode: UpstreamTls },
    #[error("upstream TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream asks for a password but upstream.password_env/password_file is not set")]
    NoPassword,
    #[error("upstream authentication method {0} is not supported")]
    UnsupportedAuth(i32),
    #[error("upstream SCRAM: {0}")]
    Scram(String),
    /// The server answered with an ErrorResponse; its fields are kept so
    /// the client sees the server's own SQLSTATE (e.g. 3D000 no such database).
    #[error("upstream refused the session: {message} ({code})")]
    Server { code: String, message: String },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream connection lost during startup: {0}")]
    Read(#[from] ReadError),
    #[error("upstream i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Plain or TLS upstream stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Everything the upstream told us at login.
pub struct Login {
    pub stream: Stream,
    /// ParameterStatus frames as the server sent them, to relay verbatim.
    pub parameter_frames: BytesMut,
    pub backend_pid: i32,
    pub backend_secret: i32,
    pub tls: bool,
    /// Bytes the server sent after ReadyForQuery (normally none).
    pub leftover: BytesMut,
}

/// Settings shared by all upstream connections.
pub struct Connector {
    pub cfg: Upstream,
    pub tls: Option<Arc<ClientConfig>>,
}

impl Connector {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    async fn tcp(&self) -> Result<TcpStream, Error> {
        let addr = self.addr();
        let secs = self.cfg.connect_timeout.as_secs();
        let tcp = crate::timers::timeout(self.cfg.connect_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::Timeout {
                addr: addr.clone(),
                secs,
            })?
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// Open a session as the proxy's upstream user. `params` are the
    /// startup parameters to send besides `user` (database, application_name...).
    pub async fn login(&self, params: &[(&str, &str)]) -> Result<Login, Error> {
        let addr = self.addr();
        let secs = self.cfg.connect_timeout.as_secs();
        crate::timers::timeout(self.cfg.connect_timeout * 2, self.login_inner(params))
            .await
            .map_err(|_| Error::Timeout { addr, secs })?
    }

    async fn login_inner(&self, params: &[(&str, &str)]) -> Result<Login, Error> {
        let mut tcp = self.tcp().await?;
        let mut stream = match (&self.tls, self.cfg.tls) {
            (Some(tls), mode) => {
                // SSLRequest
                tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
                let mut answer = [0u8; 1];
                tcp.read_exact(&mut answer).await?;
                if answer[0] == b'S' {
                    let name = ServerName::try_from(self.cfg.host.clone())
                        .map_err(|e| Error::Tls(std::io::Error::other(e)))?;
                    let s = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(Error::Tls)?;
                    Stream::Tls(Box::new(s))
                } else if mode == UpstreamTls::Prefer {
                    Stream::Plain(tcp)
                } else {
                    return Err(Error::TlsRefused {
                        addr: self.addr(),
                        mode,
                    });
                }
            }
            (None, _) => Stream::Plain(tcp),
        };
        let tls = matches!(stream, Stream::Tls(_));

        let mut out = BytesMut::with_capacity(256);
        out.put_i32(0);
        out.put_i32(196608); // protocol 3.0
        for (k, v) in
            std::iter::once(("user", self.cfg.user.as_str())).chain(params.iter().copied())
        {
            out.extend_from_slice(k.as_bytes());
            out.put_u8(0);
            out.extend_from_slice(v.as_bytes());
            out.put_u8(0);
        }
        out.put_u8(0);
        let len = out.len() as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&out).await?;

        let mut rbuf = BytesMut::with_capacity(8192);
        let mut parameter_frames = BytesMut::new();
        let mut key = (0, 0);
        let mut scram = None;
        loop {
            let frame = read_frame(&mut stream, &mut rbuf, 1 << 20).await?;
            match frame[0] {
                b'R' => {
                    let mut b = Body::new(&frame);
                    let code = b.i32().map_err(|e| Error::Protocol(e.to_string()))?;
                    out.clear();
                    match code {
                        0 => continue,
                        3 => {
                            let pw = self.password()?;
                            let mut body = pw.0.as_bytes().to_vec();
                            body.push(0);
                            messages::password_family(&mut out, &body);
                        }
                        5 => {
                            let salt = b.bytes(4).map_err(|e| Error::Protocol(e.to_string()))?;
                            let pw = self.password()?;
                            let inner = format!(
                                "{:x}",
                                md5_digest(&[pw.0.as_bytes(), self.cfg.user.as_bytes()])
                            );
                            let outer = format!("md5{:x}", md5_digest(&[inner.as_bytes(), salt]));
                            let mut body = outer.into_bytes();
                            body.push(0);
                            messages::password_family(&mut out, &body);
                        }
                        10 => {
                            let pw = self.password()?;
                            let client = ScramClientAuth::new(self.cfg.user.clone(), pw.0.clone());
                            let (first, next) = client
                                .build_client_first()
                                .map_err(|e| Error::Scram(e.to_string()))?;
                            messages::sasl_initial(&mut out, "SCRAM-SHA-256", first.as_bytes());
                            scram = Some(Scram::First(next));
                        }
                        11 => {
                            let Some(Scram::First(st)) = scram.take() else {
                                return Err(Error::Protocol("unexpected SASLContinue".into()));
                            };
                            let (fin, next) = st
                                .build_client_final(b.rest())
                                .map_err(|e| Error::Scram(e.to_string()))?;
                            messages::password_family(&mut out, fin.as_bytes());
                            scram = Some(Scram::Final(next));
                        }
                        12 => {
                            let Some(Scram::Final(st)) = scram.take() else {
                                return Err(Error::Protocol("unexpected SASLFinal".into()));
                            };
                            st.verify_server_final(b.rest())
                                .map_err(|e| Error::Scram(e.to_string()))?;
                            continue;
                        }
                        other => return Err(Error::UnsupportedAuth(other)),
                    }
                    stream.write_all(&out).await?;
                }
                b'S' => parameter_frames.extend_from_slice(&frame),
                b'K' => {
                    let mut b = Body::new(&frame);
                    key = (
                        b.i32().map_err(|e| Error::Protocol(e.to_string()))?,
                        b.i32().map_err(|e| Error::Protocol(e.to_string()))?,
                    );
                }
                b'Z' => {
                    return Ok(Login {
                        stream,
                        parameter_frames,
                        backend_pid: key.0,
                        backend_secret: key.1,
                        tls,
                        leftover: rbuf,
                    });
                }
                b'E' => {
                    let (code, message) = parse_error(&frame);
                    return Err(Error::Server { code, message });
                }
                b'N' | b'v' => {} // notices / protocol negotiation: nothing to do
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected message {:?} during login",
                        other as char
                    )));
                }
            }
        }
    }

    fn password(&self) -> Result<&Secret, Error> {
        self.cfg.password.as_ref().ok_or(Error::NoPassword)
    }

    /// Forward a cancel for the given upstream backend. Cancel requests go
    /// on their own connection and get no answer (protocol 3.0).
    pub async fn cancel(&self, pid: i32, secret: i32) -> Result<(), Error> {
        let mut tcp = self.tcp().await?;
        let mut msg = [0u8; 16];
        msg[..4].copy_from_slice(&16i32.to_be_bytes());
        msg[4..8].copy_from_slice(&80877102i32.to_be_bytes());
        msg[8..12].copy_from_slice(&pid.to_be_bytes());
        msg[12..].copy_from_slice(&secret.to_be_bytes());
        tcp.write_all(&msg).await?;
        // Wait for the server to close, so the cancel is delivered before we return.
        let mut sink = [0u8; 1];
        let _ = crate::timers::timeout(self.cfg.connect_timeout, tcp.read(&mut sink)).await;
        Ok(())
    }
}

enum Scram {
    First(pgwire::api::auth::sasl::scram::ScramClientAuthWaitingForServerFirst),
    Final(pgwire::api::auth::sasl::scram::ScramClientAuthWaitingForServerFinal),
}

fn md5_digest(parts: &[&[u8]]) -> md5::Digest {
    let mut ctx = md5::Context::new();
    for p in parts {
        ctx.consume(p);
    }
    ctx.finalize()
}

/// SQLSTATE and message of an ErrorResponse frame.
pub fn parse_error(frame: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    let mut b = Body::new(frame);
    while let Ok(field) = b.bytes(1) {
        if field[0] == 0 {
            break;
        }
        let Ok(v) = b.cstr() else { break };
        match field[0] {
            b'C' => code = String::from_utf8_lossy(v).into_owned(),
            b'M' => message = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
    }
    (code, message)
}
