//! Whole-frame reads for the handshake phases (startup, authentication,
//! upstream login), where latency does not matter and simplicity does.
//! The relay itself does not use this: it frames in place (`frame`).

use super::frame::{self, FrameError};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Read one complete frame into `buf` and split it off (header included).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, ReadError> {
    loop {
        if let Some(h) = frame::header(buf, max)?
            && buf.len() >= h.total
        {
            return Ok(buf.split_to(h.total));
        }
        if r.read_buf(buf).await? == 0 {
            return Err(ReadError::Closed);
        }
    }
}

/// Drop a frame's 5-byte header, leaving its body.
pub fn body(mut frame: BytesMut) -> BytesMut {
    frame.advance(5);
    frame
}

/// How much room to give the next read of a relay buffer.
///
/// Idle sessions are the common case (agents hold connections open), so a
/// buffer starts small (1 KiB: a pgbench-sized query or result fits; 2 KiB
/// cost idle sessions 2 KiB more each, both directions, in
/// `bench/run.sh`'s 1,000-connection test) and only a read that fills it completely doubles the
/// next one, up to `MAX`, for bulk results and COPY. Reads that use little
/// of the room halve it again, so a session that once streamed a big result
/// does not keep asking for big reservations.
pub struct ReadSize {
    next: usize,
}

impl ReadSize {
    pub const MIN: usize = 1024;
    pub const MAX: usize = 64 * 1024;

    pub fn new() -> Self {
        ReadSize { next: Self::MIN }
    }

    /// Make sure `buf` has room for the next read; returns that room.
    pub fn prepare(&self, buf: &mut BytesMut) -> usize {
        if buf.capacity() - buf.len() < self.next / 2 {
            buf.reserve(self.next);
        }
        buf.capacity() - buf.len()
    }

    /// Account for a read of `n` bytes into `room` bytes of space.
    pub fn record(&mut self, n: usize, room: usize) {
        if n == room {
            self.next = (self.next * 2).min(Self::MAX);
        } else if n < self.next / 4 {
            self.next = (self.next / 2).max(Self::MIN);
        }
    }
}

impl Default for ReadSize {
    fn default() -> Self {
        Self::new()
    }
}

/// Give memory back after a burst: an empty buffer whose allocation grew
/// past `ReadSize::MAX` (a big frame, a long batch) is replaced by an
/// empty one, so a session idling after a large result holds no large
/// allocation.
pub fn release_if_large(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > ReadSize::MAX {
        *buf = BytesMut::new();
    }
}

/// A login buffer handed to the relay: keep it only if it holds bytes (a
/// pipelined first query). An empty one is dropped, freeing the login
/// read's allocation for the whole life of an idle session.
pub fn keep_if_nonempty(buf: BytesMut) -> BytesMut {
    if buf.is_empty() { BytesMut::new() } else { buf }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_size_grows_on_full_reads_and_shrinks_on_small_ones() {
        let mut rs = ReadSize::new();
        let mut buf = BytesMut::new();
        let room = rs.prepare(&mut buf);
        assert!(
            (ReadSize::MIN..2 * ReadSize::MIN).contains(&room),
            "starts small: {room}"
        );
        for _ in 0..10 {
            rs.record(rs.next, rs.next);
        }
        assert_eq!(rs.next, ReadSize::MAX);
        rs.record(10, ReadSize::MAX);
        assert_eq!(rs.next, ReadSize::MAX / 2);
        let mut big = BytesMut::with_capacity(4 * ReadSize::MAX);
        release_if_large(&mut big);
        assert_eq!(big.capacity(), 0);
    }
}
