//! The two directions' halves of a session's socket.
//!
//! The relay reads from and writes to each socket from two futures of one
//! task. `tokio::io::split` makes that possible for any stream, but every
//! poll of either half then takes the stream's lock (an `Arc` and a mutex:
//! two atomic read-modify-writes per read or write, on every message of the
//! hot path). A plain TCP socket needs no lock to be read and written at
//! once: `TcpStream::split` lends out both halves for free. TLS streams
//! (one state machine for both directions) keep tokio's split.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, tcp};

/// The read half of a socket, borrowed for the session.
pub enum ReadHalf<'a, T> {
    Tcp(tcp::ReadHalf<'a>),
    Locked(tokio::io::ReadHalf<&'a mut T>),
}

/// The write half of a socket, borrowed for the session.
pub enum WriteHalf<'a, T> {
    Tcp(tcp::WriteHalf<'a>),
    Locked(tokio::io::WriteHalf<&'a mut T>),
}

/// Splits `stream`, lock-free when `plain` finds a bare TCP socket in it.
pub fn split<'a, T>(
    stream: &'a mut T,
    plain: fn(&mut T) -> Option<&mut TcpStream>,
) -> (ReadHalf<'a, T>, WriteHalf<'a, T>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    // Asked first and looked up again: returning the borrow from a
    // conditional is what the borrow checker cannot follow yet.
    if plain(stream).is_some() {
        let (r, w) = plain(stream).expect("checked above").split();
        (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
    } else {
        let (r, w) = tokio::io::split(stream);
        (ReadHalf::Locked(r), WriteHalf::Locked(w))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadHalf<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Locked(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteHalf<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Locked(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Locked(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Locked(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        (a, l.accept().await.unwrap().0)
    }

    /// Both kinds of halves carry bytes both ways and shut the write side.
    #[tokio::test]
    async fn halves_relay_and_shut_down() {
        for lock_free in [true, false] {
            let (mut a, mut b) = pair().await;
            let plain: fn(&mut TcpStream) -> Option<&mut TcpStream> =
                if lock_free { |s| Some(s) } else { |_| None };
            let (mut r, mut w) = split(&mut a, plain);
            assert_eq!(matches!(r, ReadHalf::Tcp(_)), lock_free);
            w.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            b.write_all(b"pong").await.unwrap();
            r.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong");
            w.shutdown().await.unwrap();
            assert_eq!(b.read(&mut got).await.unwrap(), 0, "write side closed");
        }
    }
}
