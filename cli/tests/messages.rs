//! What a person reads when something is wrong: each message says what
//! happened and what to do next, once, on one line. Every test runs the real
//! `volley` binary (and, where a gateway is needed, a real in-process one on
//! loopback) and reads the message it prints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use volley_testkit::connector::connector_config;
use volley_testkit::engine::start_default_gateway;
use volley_testkit::files::{write_file, TempDir};
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::{connector_token, session_token, SECRET};
use volley_testkit::{free_port, wait_until};

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

/// Runs `volley args…` in `dir` to completion (stdin closed, `RUST_LOG=info`).
fn volley_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(VOLLEY)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("volley runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The lines of `output` that start with `error:`.
fn error_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.starts_with("error:")).map(str::to_owned).collect()
}

/// A gateway that is already listening elsewhere owns the port: one line,
/// the OS's reason once, and both ways to choose another address.
#[test]
fn port_in_use_is_one_line_naming_listen() {
    let dir = TempDir::new("msg-port");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    write_file(&dir, "gateway.yaml", format!("tableros_secret_key: \"{SECRET}\"\nworkers: 1\n").as_bytes());
    let output = volley_in(dir.path(), &["gateway", "--config", "gateway.yaml", "--listen", &addr]);
    assert!(!output.status.success(), "{}", text(&output));
    let errors = error_lines(&output);
    assert_eq!(errors.len(), 1, "one error line:\n{}", text(&output));
    let line = &errors[0];
    assert!(line.contains(&addr), "names the address: {line}");
    assert!(line.contains("--listen") && line.contains("listen:"), "names --listen and listen: {line}");
    assert_eq!(line.matches("in use").count(), 1, "the reason once, not doubled: {line}");
}

/// A config file or dataset file that is not there is named by the absolute
/// path that was looked at, whatever directory the command ran in; the OS's
/// reason appears once.
#[test]
fn missing_files_are_named_by_absolute_path() {
    let dir = TempDir::new("msg-missing");
    let absolute = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    let gateway = volley_in(dir.path(), &["gateway", "--config", "nope.yaml"]);
    let errors = error_lines(&gateway);
    assert_eq!(errors.len(), 1, "{}", text(&gateway));
    assert!(errors[0].contains(&absolute("nope.yaml")), "gateway: {}", errors[0]);
    assert_eq!(errors[0].matches("No such file").count(), 1, "gateway: {}", errors[0]);

    let connector = volley_in(dir.path(), &["connector", "--config", "nope.yaml"]);
    let errors = error_lines(&connector);
    assert_eq!(errors.len(), 1, "{}", text(&connector));
    assert!(errors[0].contains(&absolute("nope.yaml")), "connector: {}", errors[0]);
    assert_eq!(errors[0].matches("No such file").count(), 1, "connector: {}", errors[0]);

    let config = json!({
        "gateway": {"uri": "ws://127.0.0.1:9/ws/connect"},
        "tenant": {"id": "t"},
        "datasets": {"ventas": {"type": "csv", "path": "data/nope.csv"}},
    });
    write_file(&dir, "connector.yaml", config.to_string().as_bytes());
    let test = volley_in(dir.path(), &["connector", "--config", "connector.yaml", "--test"]);
    let out = text(&test);
    assert!(!test.status.success(), "{out}");
    let line = out.lines().find(|l| l.starts_with("FAIL")).expect("a FAIL line");
    assert!(line.contains(&absolute("data/nope.csv")), "dataset file: {line}");
}

/// A connector that cannot reach its gateway says where it dialled, what
/// the error was, and when it will try again; `--test` names the URI and
/// the error.
#[test]
fn unreachable_gateway_is_named_with_the_error_and_the_next_retry() {
    let dir = TempDir::new("msg-unreachable");
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let uri = format!("ws://{closed}/ws/connect");
    let config =
        connector_config(closed, "t", "unused", json!({"parallel_connections": 1, "reconnect_delay": 0.2}), json!({}));
    let path = write_file(&dir, "connector.yaml", config.to_string().as_bytes());
    let path = path.to_str().expect("utf-8");

    let connector = VolleyProcess::spawn(VOLLEY, &["connector", "--config", path]);
    assert!(
        wait_until(Duration::from_secs(10), || connector
            .output()
            .lines()
            .filter(|l| l.contains("retrying in"))
            .count()
            >= 2),
        "two attempts logged with their retry:\n{}",
        connector.output()
    );
    let output = connector.output();
    let line = output.lines().find(|l| l.contains("retrying in")).expect("a retry line");
    assert!(line.contains(&uri), "names the URI: {line}");
    assert!(line.to_lowercase().contains("connection refused"), "names the error: {line}");
    assert!(line.contains(" s"), "says when, in seconds: {line}");
    drop(connector);

    let test = volley_in(dir.path(), &["connector", "--config", path, "--test"]);
    let out = text(&test);
    let line = out.lines().find(|l| l.starts_with("FAIL gateway")).expect("a FAIL gateway line");
    assert!(line.contains(&uri) && line.to_lowercase().contains("connection refused"), "{line}");
    assert_eq!(line.matches(&uri).count(), 1, "the URI once: {line}");
}

/// `volley connector --test` with `tenant.token` as given (`None`: no
/// token at all) against an in-process gateway; the FAIL gateway line.
fn register_refusal(token: Option<&str>) -> String {
    let dir = TempDir::new("msg-token");
    let gateway = start_default_gateway();
    let mut config = connector_config(gateway.local_addr(), "abc-123", "x", json!({}), json!({}));
    match token {
        Some(token) => config["tenant"]["token"] = json!(token),
        None => {
            config["tenant"].as_object_mut().expect("tenant").remove("token");
        }
    }
    write_file(&dir, "connector.yaml", config.to_string().as_bytes());
    let test = volley_in(dir.path(), &["connector", "--config", "connector.yaml", "--test"]);
    let out = text(&test);
    assert!(!test.status.success(), "{out}");
    out.lines().find(|l| l.starts_with("FAIL gateway")).expect("a FAIL gateway line").to_owned()
}

/// A browser session token in `tenant.token`: the refusal says what kind of
/// token it is and which command makes a connector credential.
#[test]
fn browser_token_as_connector_credential_names_its_kind_and_the_command() {
    let line = register_refusal(Some(&session_token("abc-123", &["*"])));
    assert!(line.contains("browser session token"), "{line}");
    assert!(line.contains("volley token --connector --tenant abc-123"), "{line}");
    assert!(!line.contains("missing field"), "{line}");
}

/// The reverse: a connector credential presented by a browser.
#[test]
fn connector_credential_as_browser_session_names_its_kind_and_the_command() {
    let gateway = start_default_gateway();
    let mut stream = TcpStream::connect(gateway.local_addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let request = format!(
        "GET /stream/{} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        connector_token("abc-123")
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("connector credential"), "{response}");
    assert!(response.contains("volley token --tenant abc-123 --user"), "{response}");
}

/// A seed-style connector (no `tenant.token`) is told both fixes.
#[test]
fn seed_connector_without_token_is_told_both_fixes() {
    let line = register_refusal(None);
    assert!(line.contains("volley token --connector --tenant abc-123"), "{line}");
    assert!(line.contains("allow_unauthenticated_connectors: true"), "{line}");
}

/// `volley gateway` with `config` (JSON) under an open-file limit of
/// `nofile`, once listening; its address.
fn gateway_with_nofile(dir: &TempDir, nofile: u64, config: serde_json::Value) -> (VolleyProcess, String) {
    let path = write_file(dir, "gateway.yaml", config.to_string().as_bytes());
    let process =
        VolleyProcess::spawn_with_nofile(VOLLEY, nofile, &["gateway", "--config", path.to_str().expect("utf-8")]);
    let (process, url) = process.listening();
    (process, url.trim_start_matches("http://").to_owned())
}

/// The log lines that mention the open-file limit.
fn nofile_lines(output: &str) -> Vec<String> {
    output.lines().filter(|l| l.contains("open-file limit")).map(str::to_owned).collect()
}

/// A default start (no `limits.connections_max` in the file) under a limit
/// below the default 200 000 is not warned about: the gateway takes what
/// fits as its connection limit and says so at info level, with how to get
/// more.
#[test]
fn open_file_limit_is_not_a_warning_on_a_default_start() {
    let dir = TempDir::new("msg-nofile-default");
    let config = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET});
    let (gateway, _) = gateway_with_nofile(&dir, 4096, config);
    let lines = nofile_lines(&gateway.output());
    assert!(lines.iter().all(|l| !l.contains("WARN")), "no warning on a default start: {lines:?}");
    let info = lines.iter().find(|l| l.contains("INFO")).expect("one info line about the limit");
    assert!(info.contains("ulimit -n") && info.contains("LimitNOFILE="), "says how to raise it: {info}");
}

/// A `limits.connections_max` the limit cannot hold is warned about, with
/// the numbers and both ways to raise it.
#[test]
fn open_file_limit_warns_when_configured_connections_do_not_fit() {
    let dir = TempDir::new("msg-nofile-short");
    let config = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET,
                        "limits": {"connections_max": 100_000}});
    let (gateway, _) = gateway_with_nofile(&dir, 4096, config);
    let lines = nofile_lines(&gateway.output());
    let warning = lines.iter().find(|l| l.contains("WARN")).unwrap_or_else(|| panic!("a warning: {lines:?}"));
    assert!(warning.contains("4096") && warning.contains("100000"), "{warning}");
    assert!(warning.contains("ulimit -n") && warning.contains("LimitNOFILE="), "{warning}");

    // One that fits is not mentioned at all.
    let dir = TempDir::new("msg-nofile-fits");
    let config = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET,
                        "limits": {"connections_max": 1000}});
    let (gateway, _) = gateway_with_nofile(&dir, 4096, config);
    assert_eq!(nofile_lines(&gateway.output()), Vec::<String>::new());
}

/// Where the limit bites, a default gateway refuses the connections over
/// what fits with 503 (`at its connection limit`) instead of failing its
/// accepts with "Too many open files".
#[test]
fn open_file_limit_caps_a_default_gateway_with_a_clean_refusal() {
    let dir = TempDir::new("msg-nofile-cap");
    let config = json!({"listen": "127.0.0.1:0", "workers": 1, "tableros_secret_key": SECRET});
    let (gateway, addr) = gateway_with_nofile(&dir, 320, config);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                let answer = String::from_utf8_lossy(&buf[..n]);
                assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("connection limit"), "{answer}");
                refused += 1;
            }
            _ => held.push(stream),
        }
    }
    assert!(refused > 0, "some connections are refused with 503; {} held", held.len());
    assert!(held.len() >= 32, "the connections that fit are held: {}", held.len());
    let output = gateway.output();
    assert!(!output.contains("Too many open files"), "{output}");
}

/// A `;`-separated file read with the default `,`: `--test` says how many
/// columns it found and which delimiter the file seems to use; a file in
/// Windows-1252 read as UTF-8 is told about `encoding:`.
#[test]
fn csv_dialect_mistakes_get_a_hint_from_test_mode() {
    let dir = TempDir::new("msg-csv");
    let gateway = start_default_gateway();
    write_file(&dir, "ventas.csv", "fecha;importe;nota\n2024-01-15;12,5;a\n2024-01-16;7;b\n".as_bytes());
    write_file(&dir, "cuentas.csv", b"a;b;c\n1;2;3\n4;5;6\n");
    write_file(&dir, "clientes.csv", b"nombre;saldo\nPe\xf1a;1\nN\xfa\xf1ez;2\n");
    let config = connector_config(
        gateway.local_addr(),
        "t",
        &connector_token("t"),
        json!({}),
        json!({
            "ventas": {"type": "csv", "path": "ventas.csv"},
            "cuentas": {"type": "csv", "path": "cuentas.csv"},
            "clientes": {"type": "csv", "path": "clientes.csv", "delimiter": ";"},
        }),
    );
    write_file(&dir, "connector.yaml", config.to_string().as_bytes());
    let test = volley_in(dir.path(), &["connector", "--config", "connector.yaml", "--test"]);
    let out = text(&test);
    assert!(!test.status.success(), "{out}");
    for dataset in ["ventas", "cuentas"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL dataset {dataset}:")))
            .unwrap_or_else(|| panic!("{dataset} fails:\n{out}"));
        assert!(line.contains("1 column found") && line.contains("is the delimiter `;`?"), "{line}");
        assert!(line.contains(r#"delimiter: ";""#), "says what to write: {line}");
        assert!(!line.contains("Expected 1 records"), "{line}");
    }
    let line = out.lines().find(|l| l.starts_with("FAIL dataset clientes:")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("UTF-8") && line.contains("encoding: windows-1252"), "{line}");
}
