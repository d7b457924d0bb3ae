//! Who is on the other end of a session: the record the relay keeps for
//! every client connection and that audit events carry.

use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Identity of one client session, fixed at login.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Unique, unguessable-enough id used in logs, audit records, Slack.
    pub id: String,
    pub agent: String,
    /// The human who sponsors the agent (may not approve its requests).
    pub owner: Option<String>,
    pub client_addr: SocketAddr,
    pub tls: bool,
    /// Subject of the client certificate, when mTLS is configured and used.
    pub client_cert_subject: Option<String>,
    pub database: String,
    pub application_name: String,
    #[serde(with = "crate::identity::rfc3339")]
    pub started_at: SystemTime,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `s-<unix-ms hex>-<counter>-<random>`: sortable by start, unique within
/// and across processes.
pub fn new_session_id() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("s-{ms:x}-{n}-{:08x}", rand::random::<u32>())
}

/// RFC 3339 UTC timestamps with microseconds, without a date crate.
pub mod rfc3339 {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn format(t: SystemTime) -> String {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() as i64;
        let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
        let (y, m, dd) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60,
            d.subsec_micros()
        )
    }

    // Howard Hinnant's days -> civil date algorithm.
    fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719468;
        let era = z.div_euclid(146097);
        let doe = z.rem_euclid(146097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    #[cfg(test)]
    #[test]
    fn formats_known_instants() {
        use std::time::Duration;
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            format(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
