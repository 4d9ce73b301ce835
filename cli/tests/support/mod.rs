//! Helpers for the end-to-end tunnel tests: an in-process gateway on real
//! sockets, the real connector (in-process or as the `volley` binary), a
//! level-1/level-2 browser written with sync `tungstenite`, an Arrow IPC
//! message splitter and pyarrow as the independent reader.
//!
//! No mocks: every byte crosses a loopback TCP socket, every dataset is a
//! real file.

#![allow(dead_code)] // each test uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_engine::{Gateway, GatewayConfig, StartOptions};
use volley_protocol::header::FrameKind;
use volley_protocol::token::{sign, ConnectorClaims, SessionClaims, ROLE_CONNECTOR};

/// The gateway secret of every test gateway.
pub const SECRET: &str = "volley-tunnel-e2e-secret";

// ----------------------------------------------------------------- files

/// `/work/shared/testdata` (the repo root's `../shared/testdata`), or `$VOLLEY_TESTDATA`.
pub fn testdata() -> PathBuf {
    std::env::var_os("VOLLEY_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"))
}

/// The 100-row CSV of the shared test data.
pub fn aggregate_csv() -> PathBuf {
    testdata().join("csv/aggregate_test_100.csv")
}

/// An 8-row Parquet file of the shared test data.
pub fn alltypes_parquet() -> PathBuf {
    testdata().join("parquet/alltypes_plain.parquet")
}

/// A directory under cargo's test tmpdir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "tunnel-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rows of the generated large dataset.
pub const BIG_ROWS: usize = 200_000;

/// A 200k-row Parquet file written once per test binary by pyarrow
/// (`scripts/data/big_parquet.py`): an int64 id, a float64, a
/// dictionary-encoded string and a plain string.
pub fn big_parquet() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tunnel-big-{}.parquet", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/data/big_parquet.py");
        let output =
            Command::new("python3").arg(script).arg(&path).arg(BIG_ROWS.to_string()).output().expect("python3 runs");
        assert!(output.status.success(), "generating the big Parquet: {}", String::from_utf8_lossy(&output.stderr));
        path
    })
    .clone()
}

// ---------------------------------------------------------------- gateway

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("local addr").port()
}

/// A test gateway config: `listen`, two workers, [`SECRET`].
pub fn gateway_config(listen: SocketAddr) -> GatewayConfig {
    GatewayConfig {
        listen: Some(listen.to_string()),
        workers: Some(2),
        tableros_secret_key: Some(volley_engine::config::Secrets::One(SECRET.into())),
        ..GatewayConfig::default()
    }
}

/// Starts a gateway; on a fixed port it retries for a while (a previous
/// gateway on that port may still be releasing it).
pub fn start_gateway(config: GatewayConfig) -> Gateway {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match volley_engine::start(config.clone(), StartOptions::default()) {
            Ok(gateway) => return gateway,
            Err(e) if Instant::now() < deadline => {
                eprintln!("gateway start retry: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("gateway does not start: {e}"),
        }
    }
}

/// A gateway on a free port of 127.0.0.1.
pub fn start_default_gateway() -> Gateway {
    start_gateway(gateway_config(SocketAddr::from(([127, 0, 0, 1], 0))))
}

/// Connectors the gateway counts online.
pub fn connectors_online(gateway: &Gateway) -> usize {
    gateway.shared().registry.connectors_online.load(Ordering::Acquire)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET /health` over a real socket; the `connectors` count, `None` when
/// nothing answers.
pub fn health_connectors(addr: SocketAddr) -> Option<u64> {
    let (_, body) = http_get(addr, "/health");
    serde_json::from_str::<Value>(&body).ok()?["connectors"].as_u64()
}

/// `GET path` over a real socket (`Connection: close`): the status (0 when
/// nothing answers) and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, String::new()) };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Waits until `/health` reports at least `n` connectors.
pub fn wait_health_connectors(addr: SocketAddr, n: u64, timeout: Duration) -> bool {
    wait_until(timeout, || health_connectors(addr).is_some_and(|c| c >= n))
}

// ----------------------------------------------------------------- tokens

fn now() -> i64 {
    volley_engine::unix_now()
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A browser session for `tenant` allowed to read `permisos`.
pub fn session_token(tenant: &str, permisos: &[&str]) -> String {
    let claims = SessionClaims {
        sub: "ana".into(),
        cuenta_id: tenant.into(),
        edge_id: String::new(),
        permisos: permisos.iter().map(|p| (*p).to_owned()).collect(),
        jti: format!("s-{}", next_id()),
        iat: now() - 10,
        exp: now() + 3600,
        nbf: None,
        role: None,
    };
    sign(&claims, SECRET.as_bytes()).expect("sign session")
}

/// A connector credential for `tenant`, signed with `secret`.
pub fn connector_token_with(tenant: &str, secret: &str) -> String {
    let claims = ConnectorClaims {
        cuenta_id: tenant.into(),
        role: ROLE_CONNECTOR.into(),
        jti: format!("c-{}", next_id()),
        iat: now() - 10,
        exp: now() + 3600,
        nbf: None,
    };
    sign(&claims, secret.as_bytes()).expect("sign connector")
}

/// A valid connector credential for `tenant`.
pub fn connector_token(tenant: &str) -> String {
    connector_token_with(tenant, SECRET)
}

// -------------------------------------------------------------- connector

/// Connector config text (JSON is YAML): gateway at `addr`, `tenant` with
/// `token`, `performance` and `datasets` as given.
pub fn connector_yaml(addr: SocketAddr, tenant: &str, token: &str, performance: Value, datasets: Value) -> String {
    connector_config(addr, tenant, token, performance, datasets).to_string()
}

/// [`connector_yaml`] as a JSON value, for tests that add keys.
pub fn connector_config(addr: SocketAddr, tenant: &str, token: &str, performance: Value, datasets: Value) -> Value {
    json!({
        "gateway": {"uri": format!("ws://{addr}/ws/connect")},
        "tenant": {"id": tenant, "token": token},
        "performance": performance,
        "datasets": datasets,
    })
}

/// The real connector running in this process (`service::run_config` on a thread).
pub struct InProcessConnector {
    pub shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InProcessConnector {
    pub fn start(yaml: &str, base_dir: &Path) -> InProcessConnector {
        let config = volley_connector::Config::from_yaml(yaml, base_dir).expect("connector config");
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("test-connector".into())
            .spawn(move || volley_connector::service::run_config(config, flag))
            .expect("spawn connector");
        InProcessConnector { shutdown, thread: Some(thread) }
    }

    /// Sets the shutdown flag and waits (at most `limit`) for `run_config` to
    /// return; returns how long it took.
    pub fn stop_within(mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        self.shutdown.store(true, Ordering::Release);
        let thread = self.thread.take().expect("thread");
        assert!(
            wait_until(limit, || thread.is_finished()),
            "run_config did not return within {limit:?} of the shutdown flag"
        );
        let _ = thread.join();
        started.elapsed()
    }
}

impl Drop for InProcessConnector {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Do not hang a failing test forever on a stuck connector.
            if wait_until(Duration::from_secs(10), || thread.is_finished()) {
                let _ = thread.join();
            }
        }
    }
}

/// The `volley` binary as a child process, with stdout and stderr captured
/// line by line (each with the instant it was read).
pub struct VolleyProcess {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    readers: Vec<JoinHandle<()>>,
}

impl VolleyProcess {
    pub fn spawn(args: &[&str]) -> VolleyProcess {
        VolleyProcess::spawn_with_log(args, "info")
    }

    /// Like [`VolleyProcess::spawn`] with `RUST_LOG=log_level`.
    pub fn spawn_with_log(args: &[&str], log_level: &str) -> VolleyProcess {
        VolleyProcess::launch(args, Some(log_level))
    }

    /// Like [`VolleyProcess::spawn`] with `RUST_LOG` unset: the process
    /// picks its own level (the connector's `logging.level`).
    pub fn spawn_without_rust_log(args: &[&str]) -> VolleyProcess {
        VolleyProcess::launch(args, None)
    }

    /// Like [`VolleyProcess::spawn`], with the open-file limit (soft and
    /// hard) set to `nofile` by the shell that starts it (`ulimit -n`).
    pub fn spawn_with_nofile(nofile: u64, args: &[&str]) -> VolleyProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_volley"))
            .env("RUST_LOG", "info")
            .args(args);
        VolleyProcess::spawn_command(command)
    }

    fn launch(args: &[&str], rust_log: Option<&str>) -> VolleyProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_volley"));
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command.args(args);
        VolleyProcess::spawn_command(command)
    }

    /// Starts a prepared command (another executable, working directory or
    /// environment) with stdin closed and stdout and stderr captured.
    pub fn spawn_command(mut command: Command) -> VolleyProcess {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        VolleyProcess::capture(command.spawn().expect("volley starts"))
    }

    /// Like [`VolleyProcess::spawn_command`], with the io_uring system calls
    /// refused by a seccomp filter, as in a container under Docker's or
    /// containerd's default profile.
    pub fn spawn_refusing_io_uring(mut command: Command) -> VolleyProcess {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        VolleyProcess::capture(volley_testkit::seccomp::spawn_refused(command).expect("volley starts"))
    }

    fn capture(mut child: Child) -> VolleyProcess {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for pipe in [stdout, stderr] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().expect("lock").push((Instant::now(), line));
                }
            }));
        }
        VolleyProcess { child, lines, readers }
    }

    /// `volley gateway` with `yaml` as its config file (written into `dir`),
    /// once it printed its listening line; with the URL from that line
    /// (`http://…`, or `https://…` with TLS).
    pub fn gateway(dir: &TempDir, yaml: &str, log_level: &str) -> (VolleyProcess, String) {
        let config = write_file(dir, "gateway.yaml", yaml.as_bytes());
        let process =
            VolleyProcess::spawn_with_log(&["gateway", "--config", config.to_str().expect("utf-8")], log_level);
        process.listening()
    }

    /// Waits (at most 20 s) for a gateway's listening line; the process and
    /// the URL from that line.
    pub fn listening(self) -> (VolleyProcess, String) {
        let process = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = process.output();
            if let Some(url) = output.lines().find_map(|l| l.strip_prefix("volley gateway listening on ")) {
                let url = url.trim().to_owned();
                return (process, url);
            }
            assert!(Instant::now() < deadline, "the gateway did not start:\n{output}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().expect("lock").iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The first line containing `needle`, waiting up to `timeout` for it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found =
                self.lines.lock().expect("lock").iter().find(|(_, l)| l.contains(needle)).map(|(_, l)| l.clone());
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Instants of the lines containing `needle`.
    pub fn instants_of(&self, needle: &str) -> Vec<Instant> {
        self.lines.lock().expect("lock").iter().filter(|(_, l)| l.contains(needle)).map(|(t, _)| *t).collect()
    }

    /// Sends `signal` (e.g. `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit within `timeout`; its exit code (`None`
    /// if killed by a signal). Panics (after killing it) when it does not exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("volley did not exit within {timeout:?}; output:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for VolleyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------- scripted gateway

/// The scripted gateway is shared with the connector's tests.
#[allow(unused_imports)] // each test binary uses its own part
pub use volley_testkit::gateway::ScriptedGateway;

// ---------------------------------------------------------------- browser

/// The browser client is shared with the engine's tests.
#[allow(unused_imports)] // each test binary uses its own part
pub use volley_testkit::browser::{Browser, QueryResult, Received};

// ------------------------------------------------------------- arrow IPC

fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn to_usize(v: impl TryInto<usize>) -> usize {
    v.try_into().ok().expect("fits usize")
}

/// (header type, body length) of an IPC `Message` flatbuffer, read from its
/// vtable: field 1 `header_type` (1 Schema, 2 DictionaryBatch, 3
/// RecordBatch), field 3 `bodyLength`.
fn message_meta(meta: &[u8]) -> (u8, usize) {
    let table = to_usize(le_u32(meta, 0));
    let soffset = i32::from_le_bytes(meta[table..table + 4].try_into().expect("4 bytes"));
    let vtable = to_usize(i64::try_from(table).expect("i64") - i64::from(soffset));
    let vtable_len = usize::from(u16::from_le_bytes(meta[vtable..vtable + 2].try_into().expect("2 bytes")));
    let field = |id: usize| -> usize {
        let at = vtable + 4 + 2 * id;
        if at + 2 <= vtable + vtable_len {
            usize::from(u16::from_le_bytes(meta[at..at + 2].try_into().expect("2 bytes")))
        } else {
            0
        }
    };
    let header_type = match field(1) {
        0 => 0,
        off => meta[table + off],
    };
    let body_len = match field(3) {
        0 => 0,
        off => to_usize(i64::from_le_bytes(meta[table + off..table + off + 8].try_into().expect("8 bytes"))),
    };
    (header_type, body_len)
}

/// Splits an encapsulated IPC byte sequence into whole messages: (kind, length).
pub fn ipc_messages(data: &[u8]) -> Vec<(FrameKind, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        assert!(pos + 8 <= data.len(), "truncated IPC message prefix at {pos}");
        assert_eq!(le_u32(data, pos), 0xFFFF_FFFF, "continuation marker at {pos}");
        let meta_len = to_usize(le_u32(data, pos + 4));
        pos += 8;
        if meta_len == 0 {
            out.push((FrameKind::EndOfStream, pos - start));
            continue;
        }
        let (header_type, body_len) = message_meta(&data[pos..pos + meta_len]);
        pos += meta_len + body_len;
        assert!(pos <= data.len(), "IPC message overruns its frame");
        let kind = match header_type {
            1 => FrameKind::Schema,
            2 => FrameKind::Dictionary,
            3 => FrameKind::RecordBatch,
            other => panic!("unexpected IPC message header type {other}"),
        };
        out.push((kind, pos - start));
    }
    out
}

/// What pyarrow says about an IPC stream, compared with its own read of a source file.
#[derive(Debug)]
pub struct PyarrowCheck {
    pub rows: u64,
    pub source_rows: u64,
    pub columns: Vec<String>,
    /// Columns whose values differ from the source's (after casting to the source's type).
    pub mismatches: Vec<String>,
    /// Sum of the checksum column: (IPC, source).
    pub checksum: (f64, f64),
}

/// Reads `ipc` (an IPC stream file) with pyarrow and compares every column
/// with pyarrow's own read of `source` (`csv` or `parquet`); `checksum_column`
/// is summed on both sides.
pub fn pyarrow_compare(ipc: &Path, kind: &str, source: &Path, checksum_column: &str) -> PyarrowCheck {
    let script = r#"
import sys, json, hashlib
import pyarrow as pa, pyarrow.ipc as ipc, pyarrow.csv as pcsv, pyarrow.parquet as pq, pyarrow.compute as pc
ipc_path, kind, src, col = sys.argv[1:5]
with open(ipc_path, 'rb') as f:
    t = ipc.open_stream(f).read_all()
s = pcsv.read_csv(src) if kind == 'csv' else pq.read_table(src)
def digest(c):
    if pa.types.is_dictionary(c.type):
        c = c.cast(c.type.value_type)
    return hashlib.sha256(repr(c.to_pylist()).encode()).hexdigest()
mismatches = []
for name in s.column_names:
    if name not in t.column_names:
        mismatches.append(name + ': missing')
        continue
    a, b = t.column(name), s.column(name)
    if a.type != b.type:
        try:
            a = a.cast(b.type)
        except Exception as e:
            mismatches.append(f'{name}: {a.type} vs {b.type}: {e}')
            continue
    if digest(a) != digest(b):
        mismatches.append(f'{name}: values differ ({t.schema.field(name).type} vs {b.type})')
def total(table):
    v = pc.sum(table.column(col)).as_py()
    return float(v or 0)
print(json.dumps({'rows': t.num_rows, 'source_rows': s.num_rows, 'columns': t.column_names,
                  'mismatches': mismatches, 'checksum': [total(t), total(s)]}))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(ipc)
        .arg(kind)
        .arg(source)
        .arg(checksum_column)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    let v: Value = serde_json::from_slice(&output.stdout).expect("pyarrow prints JSON");
    PyarrowCheck {
        rows: v["rows"].as_u64().expect("rows"),
        source_rows: v["source_rows"].as_u64().expect("source_rows"),
        columns: v["columns"].as_array().expect("columns").iter().map(|c| c.as_str().unwrap_or("").into()).collect(),
        mismatches: v["mismatches"]
            .as_array()
            .expect("mismatches")
            .iter()
            .map(|c| c.as_str().unwrap_or("").into())
            .collect(),
        checksum: (v["checksum"][0].as_f64().expect("sum"), v["checksum"][1].as_f64().expect("sum")),
    }
}

/// pyarrow's read of an IPC stream: (rows, the values of `column` as JSON).
pub fn pyarrow_read(ipc: &Path, column: &str) -> (u64, Vec<Value>) {
    let script = r#"
import sys, json, pyarrow.ipc as ipc
with open(sys.argv[1], 'rb') as f:
    t = ipc.open_stream(f).read_all()
print(json.dumps({'rows': t.num_rows, 'values': [str(v) for v in t.column(sys.argv[2]).to_pylist()]}))
"#;
    let output = Command::new("python3").arg("-c").arg(script).arg(ipc).arg(column).output().expect("python3 runs");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    let v: Value = serde_json::from_slice(&output.stdout).expect("pyarrow prints JSON");
    (v["rows"].as_u64().expect("rows"), v["values"].as_array().expect("values").clone())
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}
