//! `volley health [URL]`, the container image's HEALTHCHECK: exit status 0
//! for a gateway that answers 200 on /health, 1 with a message saying what
//! happened otherwise, within its timeout, whatever the other end does.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use volley_testkit::files::TempDir;
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::SECRET;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

fn health(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(VOLLEY).arg("health").args(args).output().expect("volley runs");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A server on a free port that runs `answer` on each connection.
fn server(answer: fn(std::net::TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer(stream));
        }
    });
    format!("http://{addr}/health")
}

#[test]
fn a_running_gateway_is_healthy_and_a_missing_page_or_stopped_gateway_is_not() {
    let dir = TempDir::new("health");
    let config = serde_json::json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET});
    let (mut gateway, url) = VolleyProcess::gateway(VOLLEY, &dir, &config.to_string(), "info");
    let url = url.trim_end_matches('/');

    let (ok, _) = health(&[&format!("{url}/health")]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let body: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("the /health JSON on stdout");
    assert_eq!(body["status"], "ok");

    let (missing, _) = health(&[&format!("{url}/no-such-page")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("answered HTTP 404, not 200"), "{}", stderr(&missing));

    gateway.signal("-TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "{}", gateway.output());
    let (stopped, _) = health(&[&format!("{url}/health")]);
    assert_eq!(stopped.status.code(), Some(1));
    let message = stderr(&stopped);
    assert!(message.contains("cannot connect") && message.contains("is the gateway running"), "{message}");
}

#[test]
fn a_server_that_never_answers_fails_within_the_timeout() {
    let url = server(|mut stream| {
        // Read the request, then say nothing until the client gives up.
        let mut buffer = [0u8; 1024];
        while stream.read(&mut buffer).is_ok_and(|n| n > 0) {}
    });
    let (output, took) = health(&["--timeout", "1", &url]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("within the timeout"), "{}", stderr(&output));
    assert!(took < Duration::from_secs(5), "took {took:?} with --timeout 1");
}

#[test]
fn an_answer_that_is_not_http_is_refused() {
    let url = server(|mut stream| {
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let (output, _) = health(&[&url]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("the answer is not HTTP: SSH-2.0"), "{}", stderr(&output));
}

#[test]
fn an_endless_answer_is_read_only_up_to_its_bound() {
    let url = server(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        let chunk = [b'x'; 64 * 1024];
        while stream.write_all(&chunk).is_ok() {}
    });
    let (output, took) = health(&["--timeout", "10", &url]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(took < Duration::from_secs(5), "it stops reading at its bound instead of waiting: {took:?}");
    assert!(output.stdout.len() < 1024, "stdout is one bounded line: {} bytes", output.stdout.len());
}

#[test]
fn urls_it_cannot_probe_are_refused_with_what_to_do() {
    let (https, _) = health(&["https://127.0.0.1:8081/health"]);
    assert_eq!(https.status.code(), Some(1));
    assert!(stderr(&https).contains("plain HTTP only") && stderr(&https).contains("scheme: HTTPS"));
    let (zero, _) = health(&["--timeout", "0"]);
    assert_eq!(zero.status.code(), Some(2), "clap refuses --timeout 0");
}
