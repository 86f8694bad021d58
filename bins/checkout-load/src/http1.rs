//! The orders' HTTP/1.1 client: one keep-alive connection per client,
//! requests written whole from a reused buffer, answers read to their
//! status and length.
//!
//! The load generator shares the machine with the service it measures, so
//! every microsecond it spends on a request is taken from the service.
//! Through reqwest an order cost the generator about 70 µs of CPU, 13 % of
//! the machine's CPU an order at 2,800 orders/s; this client costs about
//! 33 µs (docs/performance.md). reqwest brings URL parsing, header maps,
//! pooled connections behind a lock and hyper's general machinery, none of
//! which a generator needs that sends one kind of request over connections
//! it owns. This client writes the request line, its three or four headers
//! and the body in one `write`, and reads the answer
//! with one `read` when it arrives in one piece, which a small JSON answer
//! does.
//!
//! It speaks only what the service answers: a status line, headers, and a
//! body of `Content-Length` bytes. A chunked or otherwise unframed answer
//! is an error (never silently misread), and so is a malformed one.

use std::io::{self, Write as _};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head (status line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How long a connection may sit idle and still be used again: well inside
/// the service's keep-alive (actix-web closes a connection idle for 5 s),
/// so that an order is never sent on a connection the service is closing.
const IDLE_LIMIT: Duration = Duration::from_secs(2);

/// The connections not in use (fixed-rate mode, where any order may take
/// any connection). The most recently used is taken first; one idle too
/// long is dropped instead.
pub struct IdleConnections {
    idle: Mutex<Vec<(Connection, Instant)>>,
    limit: Duration,
}

impl Default for IdleConnections {
    fn default() -> Self {
        IdleConnections::idle_at_most(IDLE_LIMIT)
    }
}

impl IdleConnections {
    fn idle_at_most(limit: Duration) -> Self {
        IdleConnections {
            idle: Mutex::default(),
            limit,
        }
    }

    /// The most recently used connection still fresh, if any; the stale
    /// ones met on the way are closed.
    pub fn take(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < self.limit {
                return Some(conn);
            }
        }
        None
    }

    pub fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((conn, Instant::now()));
    }
}

/// Where the orders go.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, to connect to and to name in the `Host` header.
    pub authority: String,
    /// The request path (`/orders` under the service's base path).
    pub path: String,
}

/// One keep-alive connection. It is closed (dropped) after any error or an
/// answer that asks for it.
pub struct Connection {
    stream: TcpStream,
    /// The request being written, then the answer being read.
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(target: &Target) -> io::Result<Connection> {
        let stream = TcpStream::connect(&target.authority).await?;
        // Requests are written whole; Nagle's delay would only hold the
        // next one back.
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(2048),
        })
    }

    /// POSTs `body` (JSON) to `target` with the extra `headers`; the
    /// answer's status, and whether the connection may be used again.
    pub async fn post_json(
        &mut self,
        target: &Target,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, bool)> {
        self.buf.clear();
        write_request(&mut self.buf, target, headers, body);
        self.stream.write_all(&self.buf).await?;
        self.read_answer().await
    }

    /// Reads one answer, discarding its body.
    async fn read_answer(&mut self) -> io::Result<(u16, bool)> {
        self.buf.clear();
        let head = loop {
            if let Some(end) = find_head_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("answer head too long"));
            }
            if self.read_more().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer",
                ));
            }
        };
        let answer = parse_head(&self.buf[..head])?;
        let mut body_read = self.buf.len() - head;
        while body_read < answer.content_length {
            let n = self.read_more().await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the answer's body",
                ));
            }
            body_read += n;
        }
        if body_read > answer.content_length {
            // Nothing was asked for beyond this answer.
            return Err(invalid("bytes after the answer's body"));
        }
        Ok((answer.status, answer.keep_alive))
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + 4096, 0);
        let read = self.stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }
}

/// Appends a POST request with a JSON body to `out`.
fn write_request(out: &mut Vec<u8>, target: &Target, headers: &[(&str, &str)], body: &[u8]) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(target.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}\r\n", body.len());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Where the head ends (just past the blank line), if it has arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|at| at + 4)
}

/// What the generator needs of an answer's head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: usize,
    keep_alive: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(invalid("not an HTTP/1.x answer"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| invalid("answer without a status"))?;
    let mut content_length = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed answer header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("malformed Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    // 1xx, 204 and 304 carry no body; everything else the service sends
    // is framed by its length.
    let bodiless = status < 200 || status == 204 || status == 304;
    let content_length = match content_length {
        Some(n) => n,
        None if bodiless => 0,
        None => return Err(invalid("answer without a Content-Length")),
    };
    Ok(Head {
        status,
        content_length,
        keep_alive,
    })
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::net::TcpListener;

    /// A listener on a free local port, and the target that reaches it.
    async fn local_server() -> (TcpListener, Target) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            authority: listener.local_addr().unwrap().to_string(),
            path: "/orders".into(),
        };
        (listener, target)
    }

    #[test]
    fn a_request_is_written_whole_with_its_headers() {
        let mut out = Vec::new();
        let target = Target {
            authority: "127.0.0.1:8080".into(),
            path: "/orders".into(),
        };
        write_request(&mut out, &target, &[("Idempotency-Key", "k1")], b"{}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nIdempotency-Key: k1\r\n\r\n{}"
        );
    }

    #[test]
    fn heads_are_read_for_status_length_and_keep_alive() {
        let head = parse_head(
            b"HTTP/1.1 201 Created\r\ncontent-length: 42\r\nlocation: /orders/x\r\n\r\n",
        );
        assert_eq!(
            head.unwrap(),
            Head {
                status: 201,
                content_length: 42,
                keep_alive: true
            }
        );
        let head = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert!(!head.unwrap().keep_alive);
        let head = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn unframed_or_malformed_answers_are_errors() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
            b"SPDY/3 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                parse_head(head).is_err(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// A server that answers each request on one connection in pieces (the
    /// head split, the body late) and then closes: the client reads both
    /// answers whole and sees the second ask to close.
    #[tokio::test]
    async fn answers_in_pieces_are_read_whole_on_one_connection() {
        let (listener, target) = local_server().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for answer in [
                vec![
                    &b"HTTP/1.1 201 Cre"[..],
                    b"ated\r\nContent-Length: 5\r\n\r\nab",
                    b"cde",
                ],
                vec![
                    &b"HTTP/1.1 409 Conflict\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"[..],
                ],
            ] {
                let mut request = vec![0; 4096];
                let n = socket.read(&mut request).await.unwrap();
                seen.push(String::from_utf8_lossy(&request[..n]).into_owned());
                for piece in answer {
                    socket.write_all(piece).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            seen
        });
        let mut conn = Connection::open(&target).await.unwrap();
        let first = conn.post_json(&target, &[], b"{\"a\":1}").await;
        assert_eq!(first.unwrap(), (201, true));
        let second = conn.post_json(&target, &[], b"{}").await;
        assert_eq!(second.unwrap(), (409, false));
        let seen = server.await.unwrap();
        assert!(
            seen[0].starts_with("POST /orders HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0].ends_with("\r\n\r\n{\"a\":1}"), "{}", seen[0]);
    }

    #[tokio::test]
    async fn an_idle_connection_is_used_again_only_while_fresh() {
        let (_listener, target) = local_server().await;
        let idle = IdleConnections::idle_at_most(Duration::from_millis(50));
        assert!(idle.take().is_none());
        idle.put(Connection::open(&target).await.unwrap());
        assert!(idle.take().is_some(), "a fresh connection is taken");
        idle.put(Connection::open(&target).await.unwrap());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(idle.take().is_none(), "a stale connection is dropped");
    }

    #[tokio::test]
    async fn a_connection_closed_mid_answer_is_an_error() {
        let (listener, target) = local_server().await;
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .unwrap();
        });
        let mut conn = Connection::open(&target).await.unwrap();
        let err = conn.post_json(&target, &[], b"{}").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
