//! Connection hygiene of `serve_with`, over real sockets: a client holding more idle or half-sent
//! connections than its cap has the excess closed and does not stop others being answered; idle
//! and half-sent connections are closed after the header timeout; the node-wide cap and the
//! in-flight cap refuse the excess. Outcomes are asserted, never speed: the guard timeouts only
//! keep a broken build from hanging.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hongbao_api::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, oneshot};

/// How long a test waits for something that must happen; never reached when it works.
const GUARD: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(router: Router, options: ServeOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hongbao_api::serve_with(listener, router, options, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), task }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().expect("once").send(());
        let served = tokio::time::timeout(GUARD, self.task).await.expect("stops");
        served.expect("task").expect("served");
    }
}

fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

fn options(per_addr: usize, total: usize, header_timeout_ms: u64) -> ServeOptions {
    ServeOptions {
        connections_max: total,
        connections_per_addr_max: per_addr,
        in_flight_max: 64,
        header_read_timeout_ms: header_timeout_ms,
    }
}

/// A connection from the loopback address `from` (Linux answers on all of 127.0.0.0/8).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).expect("bind source");
    socket.connect(to).await.expect("connect")
}

/// Reads until the server closes the connection; returns what it sent first.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await.expect("closed in time") {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// One `GET /healthz` on a fresh connection from `from`; the response's status line.
async fn get_healthz(from: [u8; 4], to: SocketAddr) -> String {
    let mut stream = connect_from(from, to).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let answer = closed_by_server(&mut stream).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_cap_is_closed_and_others_are_still_answered() {
    // A long header timeout: the held connections stay open for the whole test.
    let server = Server::start(router(), options(4, 64, 60_000)).await;
    let mut held = Vec::new();
    for i in 0..4 {
        let mut stream = connect_from([127, 0, 0, 1], server.addr).await;
        if i % 2 == 1 {
            // Half-sent: a request line and no end of head.
            stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("send");
        }
        held.push(stream);
    }
    // The same address again: each excess connection is closed without an answer.
    for _ in 0..6 {
        let mut excess = connect_from([127, 0, 0, 1], server.addr).await;
        let _ = excess.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(closed_by_server(&mut excess).await.is_empty(), "closed, nothing answered");
    }
    // Another client is answered while the first holds its four.
    assert_eq!(get_healthz([127, 0, 0, 2], server.addr).await, "HTTP/1.1 200 OK");
    // The held ones are still open and usable: the idle one answers a request.
    held[0].write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("send");
    let mut buf = [0u8; 12];
    tokio::time::timeout(GUARD, held[0].read_exact(&mut buf)).await.expect("answer").expect("read");
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let server = Server::start(router(), options(16, 64, 300)).await;
    let mut idle = connect_from([127, 0, 0, 1], server.addr).await;
    let mut half = connect_from([127, 0, 0, 1], server.addr).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("send");
    // A keep-alive connection that finished one request and then says nothing.
    let mut kept = connect_from([127, 0, 0, 1], server.addr).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("send");
    let mut status = [0u8; 12];
    kept.read_exact(&mut status).await.expect("answer");
    assert_eq!(&status, b"HTTP/1.1 200");
    for stream in [&mut idle, &mut half] {
        let sent = closed_by_server(stream).await;
        // A half-sent head may hear a 408 before the close; nothing else is answered.
        let text = String::from_utf8_lossy(&sent);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // The kept one: the rest of its one response (body `ok`), then the close.
    let rest = closed_by_server(&mut kept).await;
    assert!(rest.ends_with(b"\r\n\r\nok"), "{}", String::from_utf8_lossy(&rest));
    // And the server still answers.
    assert_eq!(get_healthz([127, 0, 0, 1], server.addr).await, "HTTP/1.1 200 OK");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_wide_cap_closes_the_excess_until_a_place_frees_up() {
    let server = Server::start(router(), options(2, 4, 60_000)).await;
    let mut held = Vec::new();
    for from in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        for _ in 0..2 {
            held.push(connect_from(from, server.addr).await);
        }
    }
    let mut excess = connect_from([127, 0, 0, 3], server.addr).await;
    assert!(closed_by_server(&mut excess).await.is_empty());
    // One held connection goes away: its place is free again. The server counts it free once
    // it has seen the close, so try until it has (an outcome, not a deadline).
    drop(held.pop());
    let answered = tokio::time::timeout(GUARD, async {
        loop {
            if get_healthz([127, 0, 0, 3], server.addr).await == "HTTP/1.1 200 OK" {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(answered.is_ok(), "a freed place is given to the next client");
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_cap_are_answered_overloaded() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, e) = (Arc::clone(&release), Arc::clone(&entered));
    let router = Router::new().route(
        "/slow",
        get(move || {
            let (r, e) = (Arc::clone(&r), Arc::clone(&e));
            async move {
                e.add_permits(1);
                r.notified().await;
                "done"
            }
        }),
    );
    let options = ServeOptions { in_flight_max: 2, ..options(16, 64, 60_000) };
    let server = Server::start(router, options).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from([127, 0, 0, 1], server.addr).await;
        stream.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("send");
        slow.push(stream);
    }
    // Both are in their handler: the cap is full.
    let both = tokio::time::timeout(GUARD, entered.acquire_many(2)).await.expect("entered");
    both.expect("permits").forget();
    let mut third = connect_from([127, 0, 0, 1], server.addr).await;
    third
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let answer = String::from_utf8_lossy(&closed_by_server(&mut third).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":\"overloaded\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    release.notify_waiters();
    for stream in &mut slow {
        let mut status = [0u8; 12];
        tokio::time::timeout(GUARD, stream.read_exact(&mut status))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&status, b"HTTP/1.1 200");
    }
    drop(slow);
    server.shutdown().await;
}
