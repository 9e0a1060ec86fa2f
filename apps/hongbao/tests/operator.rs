//! The first hour of an operator: every flag explains itself, a node refuses settings that
//! would run the night wrong without a sound, campaign files can be checked and shifted, and
//! logs read well in a file or a collector.

mod support;

use std::io::Read;
use std::process::{Command, Output, Stdio};

use hongbao_domain::Campaign;
use support::{BIN, Running, campaign_path, now_s, run_ok};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_BACKTRACE", "0").output().expect("run hongbao")
}

/// The subcommands a `--help` lists (its "Commands:" section), without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The flags of a `--help` (its "Options:" section) that have no description: a flag's text is
/// on its line after the spec, or on the more indented lines below it.
fn undescribed_flags(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !(trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.contains(", --"))) {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // The spec ("-h, --help", "--data <DATA>") ends at the first run of two spaces.
        let same_line = trimmed.split_once("  ").map(|(_, rest)| rest.trim()).unwrap_or("");
        let below = lines.get(i + 1).is_some_and(|next| {
            let t = next.trim_start();
            !t.is_empty() && next.len() - t.len() > indent && !t.starts_with('-')
        });
        let described = !same_line.is_empty() && !same_line.starts_with('[') || below;
        if !described {
            missing.push(trimmed.split_whitespace().next().unwrap_or(trimmed).to_string());
        }
    }
    missing
}

/// Every subcommand, at every depth: each flag has a description.
#[test]
fn every_flag_of_every_subcommand_has_help() {
    let top = run_ok(&["--help"]);
    assert!(top.contains("Example:") && top.contains("hongbao demo"), "{top}");
    let mut queue: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    assert!(queue.len() >= 10, "{top}");
    let mut missing = Vec::new();
    let mut visited = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run_ok(&args);
        visited += 1;
        for flag in undescribed_flags(&help) {
            missing.push(format!("hongbao {} {flag}", path.join(" ")));
        }
        for sub in subcommands(&help) {
            let mut deeper = path.clone();
            deeper.push(sub);
            queue.push(deeper);
        }
    }
    assert!(visited >= 15, "only {visited} subcommands visited");
    assert!(missing.is_empty(), "flags without help:\n{}", missing.join("\n"));
}

#[test]
fn the_help_parser_sees_a_flag_without_text() {
    let help = "Options:\n      --config <CONFIG>\n      --out <OUT>\n          Where it goes\n  -h, --help  Print help\n";
    assert_eq!(undescribed_flags(help), vec!["--config".to_string()]);
}

fn serve(extra: &[&str], data: &std::path::Path) -> Output {
    let config = campaign_path();
    let mut args = vec!["serve", "--config", config.to_str().expect("utf-8")];
    args.extend(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
    args.extend(["--data", data.to_str().expect("utf-8")]);
    args.extend(extra);
    run(&args)
}

/// Example keys and a node without profiles are refused, naming the flag that allows them,
/// before the data directory is made.
#[test]
fn serve_refuses_example_keys_and_missing_profiles_naming_the_flag() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let keys = serve(&["--no-profiles"], &data);
    assert!(!keys.status.success());
    let stderr = String::from_utf8_lossy(&keys.stderr);
    assert!(
        stderr.contains("auth.ticket_keys[0]")
            && stderr.contains("example = true")
            && stderr.contains("--rehearsal"),
        "{stderr}"
    );
    let profiles = serve(&["--rehearsal"], &data);
    assert!(!profiles.status.success());
    let stderr = String::from_utf8_lossy(&profiles.stderr);
    assert!(stderr.contains("--profiles") && stderr.contains("--no-profiles"), "{stderr}");
    assert!(!data.exists(), "a refused node created its data directory");
}

#[test]
fn campaign_check_reports_capacity_liability_and_waves() {
    let path = campaign_path();
    let path = path.to_str().expect("utf-8");
    let text = std::fs::read_to_string(path).expect("read");
    let campaign = Campaign::parse(&text, path, &|_| None).expect("valid");
    let report: serde_json::Value =
        serde_json::from_str(&run_ok(&["campaign", "check", path, "--json"])).expect("JSON");
    let liability: u128 =
        campaign.gifts.iter().map(|g| u128::from(g.stock) * u128::from(g.value_cents)).sum();
    assert_eq!(report["liability_cents"].as_u64().map(u128::from), Some(liability));
    assert_eq!(report["gifts"].as_array().map(Vec::len), Some(campaign.gifts.len()));
    assert_eq!(report["games"].as_array().map(Vec::len), Some(campaign.games.len()));
    assert_eq!(report["deliverable"], true);
    let lantern = &report["games"][0];
    let stock: u64 =
        campaign.gifts.iter().filter(|g| g.game == campaign.games[0].index).map(|g| g.stock).sum();
    assert_eq!(
        (lantern["stock"].as_u64(), lantern["drain_s"].as_u64()),
        (Some(stock), Some(stock.div_ceil(u64::from(campaign.games[0].delivery_capacity_per_s))))
    );
    let waves = report["waves"].as_array().expect("waves");
    assert_eq!(waves.len() as u32, campaign.release.waves);
    for (i, wave) in waves.iter().enumerate() {
        let at = campaign.starts_at_unix_s + i as i64 * campaign.release.wave_interval_s as i64;
        assert_eq!(wave["opens_at_unix_s"].as_i64(), Some(at));
    }
    assert_eq!(report["example_keys"][0], "auth.ticket_keys[0]");

    let table = run_ok(&["campaign", "check", path]);
    for needle in ["total liability", "wave 4", "lantern-heroes", "drain h", "--rehearsal"] {
        assert!(table.contains(needle), "{needle} missing:\n{table}");
    }
}

#[test]
fn campaign_shift_moves_the_dates_and_keeps_the_comments() {
    let dir = tempfile::tempdir().expect("dir");
    let source = campaign_path();
    let original =
        Campaign::parse(&std::fs::read_to_string(&source).expect("read"), "x", &|_| None)
            .expect("valid");
    for (opens_in, offset_s) in [("10m", 600), ("0s", 0), ("-1h", -3600)] {
        let out = dir.path().join(format!("shifted{offset_s}.toml"));
        let before = now_s();
        run_ok(&[
            "campaign",
            "shift",
            source.to_str().expect("utf-8"),
            "--opens-in",
            opens_in,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        let after = now_s();
        let text = std::fs::read_to_string(&out).expect("the copy");
        assert!(text.contains("# Login tickets are signed by the login service"), "comments");
        let shifted = Campaign::parse(&text, "shifted", &|_| None).expect("a valid copy");
        assert!(
            (before + offset_s..=after + offset_s).contains(&shifted.starts_at_unix_s),
            "{opens_in}: starts at {}, now was {before}..{after}",
            shifted.starts_at_unix_s
        );
        assert_eq!(
            shifted.ends_at_unix_s - shifted.starts_at_unix_s,
            original.ends_at_unix_s - original.starts_at_unix_s
        );
        assert!(text.contains("+08:00"), "the file's own offset is kept");
    }
    let bad = run(&["campaign", "shift", "x.toml", "--opens-in", "soon", "--out", "y.toml"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("10m"));
}

/// Runs a node with stderr to a pipe until it listens, stops it, and returns its stderr.
fn node_stderr(extra: &[&str]) -> String {
    node_stderr_after(extra, |_| {})
}

/// A node's stderr from start to a graceful stop, `while_serving` called with its API's base
/// URL in between.
fn node_stderr_after(extra: &[&str], while_serving: impl FnOnce(&str)) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let config = campaign_path();
    let mut args =
        vec!["serve", "--rehearsal", "--admin-unsigned", "--no-profiles", "--role", "api"];
    args.extend(["--config", config.to_str().expect("utf-8")]);
    args.extend(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
    let data = dir.path().join("data");
    args.extend(["--data", data.to_str().expect("utf-8")]);
    args.extend(extra);
    let mut child = Command::new(BIN)
        .args(&args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = { stderr }.read_to_string(&mut text);
        text
    });
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut node = Running { child, stdout };
    let api = node.wait_for_url("api listening");
    node.wait_for_url("admin listening");
    while_serving(&api);
    assert!(node.terminate().success());
    reader.join().expect("stderr reader")
}

/// A plain HTTP/1.1 GET over a fresh connection; returns the status line.
fn get_status_line(base: &str, path: &str) -> String {
    use std::io::{BufRead, Write};
    let authority = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).expect("read");
    line
}

#[test]
fn the_access_log_has_a_line_per_request_with_route_status_and_latency_and_no_ticket() {
    let ticket = "not-a-real-ticket-but-secret";
    let quiet = node_stderr_after(&[], |api| {
        assert!(get_status_line(api, "/healthz").contains("200"));
    });
    assert!(!quiet.contains("hongbao::access"), "no access log unless asked: {quiet}");
    let logged = node_stderr_after(&["--access-log"], |api| {
        assert!(get_status_line(api, "/healthz").contains("200"));
        let orders = format!("/v1/orders?ticket={ticket}");
        assert!(get_status_line(api, &orders).contains("401"));
    });
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("hongbao::access")).collect();
    assert_eq!(lines.len(), 2, "one line per request: {logged}");
    assert!(lines[0].contains("/healthz") && lines[0].contains("200"), "{}", lines[0]);
    assert!(lines.iter().all(|l| l.contains("latency_ms")), "{lines:?}");
    assert!(!logged.contains(ticket), "the ticket is never logged: {logged}");
}

#[test]
fn logs_into_a_pipe_have_no_colour_codes_and_json_lines_parse() {
    let text = node_stderr(&[]);
    assert!(text.lines().count() >= 1, "no log lines: {text:?}");
    assert!(!text.contains("\x1b["), "colour codes in a pipe: {text:?}");
    let json = node_stderr(&["--log-format", "json"]);
    assert!(json.lines().count() >= 1, "no log lines");
    for line in json.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(value["level"].is_string(), "{line}");
    }
}
