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
            let mut driver = Driver { child, port };
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
        // chromedriver ends the browsers it started when it exits.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
