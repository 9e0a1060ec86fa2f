//! The chromedriver child process: started on a free loopback port, killed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How long chromedriver may take to listen after it starts.
const LISTEN_WAIT_MAX: Duration = Duration::from_secs(20);
/// How many times a port taken between picking it and the driver binding it is tried anew.
const SPAWN_TRIES_MAX: usize = 3;

pub(crate) struct Driver {
    child: Child,
    port: u16,
    /// The WebDriver session to end before the driver is killed (set once it is open).
    pub(crate) session: Option<String>,
}

impl Driver {
    pub(crate) async fn spawn(path: &str) -> Result<Driver, Error> {
        let mut last_error = String::new();
        for _ in 0..SPAWN_TRIES_MAX {
            let port = free_port()?;
            let child = Command::new(path)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error::Driver(format!("{path}: {e}")))?;
            let mut driver = Driver { child, port, session: None };
            match driver.wait_listening().await {
                Ok(()) => return Ok(driver),
                Err(e) => last_error = e,
            }
        }
        Err(Error::Driver(last_error))
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the driver accepts connections, or fails if it exited (e.g. the port was
    /// taken meanwhile) or did not listen in time.
    async fn wait_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while started.elapsed() < LISTEN_WAIT_MAX {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited at start: {status}"));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("chromedriver did not listen on {addr} within {} s", LISTEN_WAIT_MAX.as_secs()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Killing chromedriver would orphan its Chromium: a session still open (a test that
        // panicked before `Browser::close`) is ended first, which makes the driver quit the
        // browser. Synchronous, as a drop must be; bounded by SESSION_END_WAIT.
        if let Some(session) = self.session.take() {
            end_session(self.port, &session);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long ending a session at drop may take.
const SESSION_END_WAIT: Duration = Duration::from_secs(10);

/// `DELETE /session/{id}` over a plain blocking socket; failures are ignored (best effort).
fn end_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, SESSION_END_WAIT) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(SESSION_END_WAIT));
    let _ = stream.set_write_timeout(Some(SESSION_END_WAIT));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once the browser has quit; its content does not matter.
        let mut answer = [0u8; 1024];
        let _ = stream.read(&mut answer);
    }
}

/// A loopback port free right now (the OS picks it); another process could take it before the
/// driver binds it, which `spawn` survives by trying again.
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::Driver(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Driver(format!("no free loopback port: {e}")))
}
