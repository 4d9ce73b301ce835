//! `volley gateway` without `--config`, as the seed's gateway started: the
//! secret from `VOLLEY_SECRET` (or the seed's `TABLEROS_SECRET_KEY`), a
//! refusal naming both when neither is set, and the dashboard served when
//! the binary is started from a directory other than the checkout.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use volley_protocol::token::{sign, SessionClaims};
use volley_testkit::files::{write_file, TempDir};
use volley_testkit::http::{http_body, http_get};
use volley_testkit::process::VolleyProcess;

const SECRET_VARIABLES: [&str; 2] = ["VOLLEY_SECRET", "TABLEROS_SECRET_KEY"];

/// `volley` (the given executable) with no secret in its environment and
/// `cwd` as its working directory.
fn volley_in(executable: &Path, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(executable);
    command.args(args).current_dir(cwd).env("RUST_LOG", "info");
    for name in SECRET_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// Waits for the `volley gateway listening on http://ADDR` line; ADDR.
fn listening_addr(gateway: &VolleyProcess) -> SocketAddr {
    let line = gateway
        .wait_for_line("volley gateway listening on ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the gateway did not start:\n{}", gateway.output()));
    line.rsplit("http://").next().expect("an http:// URL").trim().parse().expect("an address")
}

/// The status of a WebSocket upgrade to `/stream/{token}`: 101 when the
/// gateway accepted the token.
fn upgrade_status(addr: SocketAddr, token: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(
        stream,
        "GET /stream/{token} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn session_token_signed_with(secret: &str) -> String {
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs())
            .expect("time");
    let claims = SessionClaims {
        sub: "ana".into(),
        cuenta_id: "t1".into(),
        edge_id: String::new(),
        permisos: vec!["*".into()],
        jti: format!("defaults-{now}-{}", secret.len()),
        iat: now - 10,
        exp: now + 3600,
        nbf: None,
        role: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign")
}

/// A copy of the checkout's layout in `dir`: the binary at
/// `target/release/volley` (a hard link to the one cargo built) and a
/// dashboard at `web/dist/index.html` holding `marker`.
fn checkout_layout(dir: &TempDir, marker: &str) -> PathBuf {
    let release = dir.join("checkout/target/release");
    std::fs::create_dir_all(&release).expect("mkdir");
    let binary = release.join("volley");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_volley"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_volley"), &binary).expect("copy the binary");
    }
    let dist = dir.join("checkout/web/dist");
    std::fs::create_dir_all(&dist).expect("mkdir");
    std::fs::write(dist.join("index.html"), format!("<!doctype html><title>{marker}</title>")).expect("index.html");
    binary
}

#[test]
fn without_a_secret_the_gateway_refuses_to_start_naming_both_variables() {
    let dir = TempDir::new("gateway-no-secret");
    let config = write_file(&dir, "gateway.yaml", b"listen: 127.0.0.1:0\n");
    let binary = Path::new(env!("CARGO_BIN_EXE_volley"));
    for args in [&["gateway"][..], &["gateway", "--config", config.to_str().expect("utf-8")]] {
        let started = Instant::now();
        let output = volley_in(binary, dir.path(), args).output().expect("volley runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let message = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{args:?}: {stderr}"));
        for needle in SECRET_VARIABLES.iter().chain(&["tableros_secret_key", "--insecure-dev"]) {
            assert!(message.contains(needle), "{args:?}: {needle} missing from: {message}");
        }
    }
}

#[test]
fn without_a_config_the_gateway_takes_its_secret_from_the_environment_and_serves_the_dashboard_from_anywhere() {
    let dir = TempDir::new("gateway-defaults");
    let marker = format!("dashboard-{}", std::process::id());
    let binary = checkout_layout(&dir, &marker);
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");

    for variable in SECRET_VARIABLES {
        let secret = format!("secret-from-{variable}");
        let mut command = volley_in(&binary, &elsewhere, &["gateway", "--listen", "127.0.0.1:0", "--workers", "1"]);
        command.env(variable, &secret);
        let mut gateway = VolleyProcess::spawn_command(command);
        let addr = listening_addr(&gateway);

        let (status, text) = http_get(addr, "/");
        let body = http_body(&text);
        assert_eq!(status, 200, "{variable}: {body}\n{}", gateway.output());
        assert!(body.contains(&marker), "{variable}: / is not the dashboard next to the binary: {body}");
        assert_eq!(upgrade_status(addr, &session_token_signed_with(&secret)), 101, "{variable}: its secret verifies");
        assert_eq!(upgrade_status(addr, &session_token_signed_with("another")), 401, "{variable}: nothing else does");

        gateway.signal("-TERM");
        assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "{}", gateway.output());
    }
}
