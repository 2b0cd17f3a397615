//! A minimal HTTP/1.1 client for one keep-alive connection: one task, one
//! write and (usually) one read per request, no channels between tasks.
//! It is the default because the load generator shares the machine's two
//! cores with the server; `--client hyper` cross-checks it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::Target;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One open connection with its buffers.
pub struct RawConn {
    stream: Stream,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of `buf` that hold data not yet consumed.
    filled: usize,
}

/// A parsed response.
pub struct RawResponse {
    pub status: StatusCode,
    pub body: Bytes,
    pub close: bool,
}

/// Request head up to and including `Content-Length: `.
pub fn request_head(target: &Target) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"POST ");
    h.extend_from_slice(target.protocol.path().as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    h.extend_from_slice(target.host.as_bytes());
    h.extend_from_slice(b"\r\nContent-Type: ");
    h.extend_from_slice(target.protocol.content_type().as_bytes());
    h.extend_from_slice(b"\r\nContent-Length: ");
    h
}

const MAX_RESPONSE: usize = 1 << 20;

impl RawConn {
    pub async fn connect(target: &Target) -> anyhow::Result<RawConn> {
        let tcp = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let stream = match &target.tls {
            Some((connector, name)) => {
                Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await.context("TLS handshake")?))
            }
            None => Stream::Plain(tcp),
        };
        Ok(RawConn { stream, out: Vec::with_capacity(512), buf: vec![0; 8192], filled: 0 })
    }

    /// Writes one request. An error means the request may not have been sent completely.
    pub async fn send(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(head);
        push_decimal(&mut self.out, body.len());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                bail!("response larger than {MAX_RESPONSE} bytes");
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.filled += n;
        Ok(())
    }

    /// Reads one complete response (Content-Length or chunked body).
    pub async fn recv(&mut self) -> anyhow::Result<RawResponse> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[..self.filled])? {
                httparse::Status::Partial => {
                    self.fill().await?;
                    continue;
                }
                httparse::Status::Complete(head_len) => {
                    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|e| anyhow!("status: {e}"))?;
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let body = if chunked {
                        self.read_chunked(head_len).await?
                    } else if let Some(len) = length {
                        while self.filled < head_len + len {
                            self.fill().await?;
                        }
                        let b = Bytes::copy_from_slice(&self.buf[head_len..head_len + len]);
                        self.consume(head_len + len);
                        b
                    } else if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                        self.consume(head_len);
                        Bytes::new()
                    } else {
                        bail!("response without Content-Length or chunked encoding");
                    };
                    return Ok(RawResponse { status, body, close });
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    async fn read_chunked(&mut self, head_len: usize) -> anyhow::Result<Bytes> {
        self.consume(head_len);
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf[..self.filled].windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| anyhow!("bad chunk size `{size_text}`: {e}"))?;
            if body.len() + size > MAX_RESPONSE {
                bail!("response larger than {MAX_RESPONSE} bytes");
            }
            let need = line_end + 2 + size + 2;
            while self.filled < need {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.consume(need);
            if size == 0 {
                // no trailers expected; the final CRLF was consumed above
                return Ok(Bytes::from(body));
            }
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static [u8]) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let mut n = 0;
            while !got[..n].windows(4).any(|w| w == b"\r\n\r\n") || !got[..n].ends_with(b"}") {
                n += s.read(&mut got[n..]).await.unwrap();
            }
            // reply in two pieces to exercise partial reads
            let (a, b) = reply.split_at(reply.len() / 2);
            s.write_all(a).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            s.write_all(b).await.unwrap();
            got.truncate(n);
            got
        });
        (addr, h)
    }

    async fn target(addr: std::net::SocketAddr) -> Target {
        Target::new(&format!("http://{addr}"), None, crate::client::Protocol::Tessera).await.unwrap()
    }

    #[tokio::test]
    async fn content_length_response() {
        let (addr, h) = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 19\r\n\r\n{\"result\":\"accept\"}",
        )
        .await;
        let t = target(addr).await;
        let mut c = RawConn::connect(&t).await.unwrap();
        c.send(&request_head(&t), br#"{"username":"u","password":"1"}"#).await.unwrap();
        let r = c.recv().await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], br#"{"result":"accept"}"#);
        assert!(!r.close);
        let req = String::from_utf8(h.await.unwrap()).unwrap();
        assert!(req.starts_with("POST /api/v1/validate HTTP/1.1\r\nHost: 127.0.0.1:"), "{req}");
        assert!(req.contains("\r\nContent-Length: 31\r\n\r\n{"), "{req}");
    }

    #[tokio::test]
    async fn chunked_and_close() {
        let (addr, h) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"res\r\nE\r\nult\":\"reject\"}\r\n0\r\n\r\n",
        )
        .await;
        let t = target(addr).await;
        let mut c = RawConn::connect(&t).await.unwrap();
        c.send(&request_head(&t), b"{}").await.unwrap();
        let r = c.recv().await.unwrap();
        assert_eq!(&r.body[..], br#"{"result":"reject"}"#);
        assert!(r.close);
        h.await.unwrap();
    }
}
