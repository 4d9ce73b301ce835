//! `volley demo` as a newcomer meets it: the real binary, a real port.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn volley() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_volley"));
    // The demo finds web/dist from the repository root.
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    command
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn demo_refuses_a_taken_port_and_names_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let output = volley().args(["demo", "--no-open", "--port", &port.to_string()]).output().expect("run volley demo");
    assert!(!output.status.success(), "the demo must not start on a taken port");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("port {port} is taken")) && stderr.contains("--port"), "{stderr}");
}

#[test]
fn demo_prints_its_url_serves_health_and_stops_cleanly_on_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut child = volley()
        .args(["demo", "--no-open", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn volley demo");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut url = None;
    let mut ventas_rows = None;
    while Instant::now() < deadline && (url.is_none() || ventas_rows.is_none()) {
        let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(1)) else { continue };
        if let Some(rest) = line.trim().strip_prefix("dashboard: ") {
            url = Some(rest.to_owned());
        }
        if let Some(rest) = line.strip_prefix("dataset ventas: ") {
            ventas_rows = rest.strip_suffix(" rows").map(str::to_owned);
        }
    }
    let url = url.expect("the demo printed its dashboard URL");
    assert!(url.starts_with(&format!("http://127.0.0.1:{port}/?session=eyJ")), "{url}");
    assert_eq!(ventas_rows.as_deref(), Some("5000"));

    // /health shows the demo connector's tunnels.
    let health = http_get(port, "/health");
    let body = health.split("\r\n\r\n").nth(1).unwrap_or_default();
    let health: serde_json::Value = serde_json::from_str(body).expect("health JSON");
    assert!(health["connectors"].as_u64().unwrap_or(0) >= 1, "{health}");

    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("the demo stops within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "the port is free again after the demo stops");
    let data_dir = std::env::temp_dir().join(format!("volley-demo-{pid}"));
    assert!(!data_dir.exists(), "the demo removes its sample data ({})", data_dir.display());
}
