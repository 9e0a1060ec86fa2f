//! Spawning the real `hongbao` binary in tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hongbao");

pub fn campaign_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/spring-festival.toml")
}

/// A child process killed when dropped, so a failing test never leaks a server.
pub struct Running {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hongbao");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Running { child, stdout }
    }

    /// Reads stdout lines until one contains `marker`; returns the first `http://host:port` in it.
    pub fn wait_for_url(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read stdout");
            assert!(n > 0, "hongbao exited before printing {marker:?}");
            if line.contains(marker) {
                let start = line.find("http://").expect("a URL on the line");
                let rest = &line[start..];
                let end = rest[7..]
                    .find(|c: char| c == '/' || c.is_whitespace())
                    .map_or(rest.len(), |i| i + 7);
                return rest[..end].to_string();
            }
        }
        panic!("no line with {marker:?}");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

pub fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run hongbao");
    assert!(
        out.status.success(),
        "hongbao {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}
