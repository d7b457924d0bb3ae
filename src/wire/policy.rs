//! The session's policy step: turns a unit of client messages into a
//! verdict. The relay loop only orchestrates; everything about *what* a
//! unit does and whether it may run lives here.

use super::Proxy;
use super::frame::{Body, FrameError};
use crate::identity::SessionInfo;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// What the relay asks about: one simple Query, or one extended-protocol
/// segment (Parse/Bind/Describe/Execute/Close... up to Sync or Flush).
pub enum Unit<'a> {
    Query { frame: &'a [u8] },
    Segment { bytes: &'a [u8], sync: bool },
}

impl Unit<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Unit::Query { frame } => frame,
            Unit::Segment { bytes, .. } => bytes,
        }
    }

    /// ReadyForQuery messages the server will send for this unit.
    pub fn ready_for_query_count(&self) -> u32 {
        match self {
            Unit::Query { .. } => 1,
            Unit::Segment { sync, .. } => *sync as u32,
        }
    }
}

pub enum Verdict {
    Forward,
    Refuse { code: &'static str, message: String },
}

pub struct Policy {
    proxy: Arc<Proxy>,
    info: SessionInfo,
    #[allow(dead_code)]
    cancel: Arc<Notify>,
    #[allow(dead_code)]
    inject: mpsc::Sender<BytesMut>,
    pub statements: u64,
}

impl Policy {
    pub fn new(proxy: Arc<Proxy>, info: SessionInfo, cancel: Arc<Notify>, inject: mpsc::Sender<BytesMut>) -> Policy {
        Policy { proxy, info, cancel, inject, statements: 0 }
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Inspect one extended-protocol frame as it arrives (validation and
    /// bookkeeping); the verdict comes for the whole segment.
    pub fn extended(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        let mut b = Body::new(frame);
        match frame[0] {
            b'P' => {
                b.cstr()?;
                b.cstr()?;
            }
            b'B' | b'E' | b'C' | b'D' => {}
            _ => {}
        }
        Ok(())
    }

    pub fn decide(&mut self, unit: &Unit<'_>) -> Verdict {
        self.statements += 1;
        self.proxy.metrics.statements_total.inc();
        let _ = unit;
        self.proxy.metrics.statements_allowed.inc();
        Verdict::Forward
    }

    pub fn end_session(&mut self, _end: &super::session::End) {}
}
