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
