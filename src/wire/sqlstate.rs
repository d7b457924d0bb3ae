//! SQLSTATE codes pg-airlock sends itself. Clients branch on these, so
//! they follow PostgreSQL's meaning (Appendix A of its manual).

/// Statement refused by a rule, or held and denied.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// Held statement timed out, or cancelled while held.
pub const QUERY_CANCELED: &str = "57014";
/// The proxy is shutting down.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// Wrong password (same code and text for unknown agents).
pub const INVALID_PASSWORD: &str = "28P01";
/// Not allowed to connect (database not in the agent's allow-list, TLS required...).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// The upstream database cannot be reached.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const CONNECTION_FAILURE: &str = "08006";
/// The database refused the proxy's own login (its `[upstream]`
/// credentials or pg_hba.conf): not the agent's fault.
pub const SERVER_REJECTED_CONNECTION: &str = "08004";
/// Malformed protocol messages.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// Messages or features the proxy refuses (FunctionCall, replication).
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// Too many sessions.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// A startup parameter the proxy will not pass on.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// Message over the configured size cap.
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
