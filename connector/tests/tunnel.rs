//! The tunnel client against a gateway played by the test on a real socket
//! (`volley_testkit::gateway`), which follows PROTOCOL.md §4.2 where the
//! engine happens to be kinder: a `do_get`'s `request_id` is unrelated to
//! its `stream_id` (the spec's own example pairs request `r3` with stream
//! `9`), and credit is small and granted only once spent, so a `credit`
//! that does not reach its stream stalls the stream.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use serde_json::json;
use volley_connector::{Catalog, Config};
use volley_testkit::arrow::assert_same_rows;
use volley_testkit::files::testdata;
use volley_testkit::gateway::{CreditedStream, ScriptedGateway};

/// Credit per grant: a few of the connector's frames (at most
/// `max_chunk_size`, 4 KiB here), so the dataset needs several grants.
const WINDOW: u64 = 4096;

/// The connector's config: one tunnel to `listener`, small frames, and the
/// 100-row CSV in batches of 10 rows.
fn config(listener: &TcpListener) -> Config {
    let addr = listener.local_addr().expect("addr");
    let csv = testdata().join("csv").join("aggregate_test_100.csv");
    let yaml = json!({
        "gateway": {"uri": format!("ws://{addr}/ws/connect")},
        "tenant": {"id": "t1"},
        "performance": {"parallel_connections": 1, "reconnect_delay": 0.1, "max_chunk_size": 4096, "min_chunk_size": 1024},
        "datasets": {"agg": {"type": "csv", "path": csv, "batch_rows": 10}},
    });
    Config::from_yaml(&yaml.to_string(), &testdata()).unwrap_or_else(|e| panic!("{e}"))
}

/// The real tunnel client on a thread, stopped (within a bound) on drop.
struct Tunnel {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tunnel {
    fn start(config: Config) -> Tunnel {
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let catalog = Arc::new(Catalog::new(&config));
        let thread = std::thread::spawn(move || volley_connector::tunnel::run(Arc::new(config), catalog, flag));
        Tunnel { shutdown, thread: Some(thread) }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else { return };
        // A failing test must not hang on a stuck connector: leave it behind.
        let deadline = Instant::now() + volley_connector::tunnel::SHUTDOWN_GRACE + Duration::from_secs(5);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Starts the connector and accepts its tunnel at level 2.
fn connector_and_gateway() -> (Tunnel, ScriptedGateway, Config) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = config(&listener);
    let tunnel = Tunnel::start(config.clone());
    let (gateway, register) = ScriptedGateway::accept_level2(&listener);
    assert_eq!(register["datasets"], json!(["agg"]), "{register}");
    (tunnel, gateway, config)
}

/// Checks that `stream` ended without error and carried all of `agg`.
fn assert_whole_dataset(stream: &CreditedStream, config: &Config) {
    let end = stream.end.as_ref().expect("the stream ended");
    assert_eq!((end["type"].as_str(), stream.error_code()), (Some("stream_end"), None), "{end}");
    let bytes = stream.bytes();
    assert_eq!(end["total_bytes"].as_u64(), Some(bytes.len() as u64), "{end}");
    assert!(
        stream.granted > stream.window,
        "the dataset fits the first credit window ({} bytes): the test proves nothing",
        stream.window
    );
    let received: Vec<RecordBatch> = StreamReader::try_new(bytes.as_slice(), None)
        .expect("the stream's payloads are one IPC stream")
        .collect::<Result<_, _>>()
        .expect("record batches decode");
    let expected: Vec<RecordBatch> = Catalog::new(config)
        .open("agg")
        .expect("open the source")
        .into_batches()
        .collect::<Result<_, _>>()
        .expect("read the source");
    assert_same_rows(&expected, &received, &format!("stream {}", stream.stream_id));
}

/// PROTOCOL.md §4.2: `do_get` request `r3` on stream `9`, then `credit`
/// for stream `9`. The credit reaches the stream by its stream id, so the
/// stream goes on past its first window and delivers every row.
#[test]
fn credit_reaches_the_stream_it_names_whatever_its_request_id() {
    let (_tunnel, mut gateway, config) = connector_and_gateway();
    let mut streams = [CreditedStream::new("r3", 9, WINDOW)];
    gateway.send(streams[0].do_get("agg"));
    gateway.serve(&mut streams, |s| s.iter().all(|stream| stream.end.is_some()));
    assert_whole_dataset(&streams[0], &config);
}

/// Two streams whose ids cross (request `r3` on stream `9`, request `r9`
/// on stream `3`), both waiting for credit: `cancel` of `r3` ends stream 9
/// with `cancelled` and leaves stream 3 alone, which, granted credit
/// afterwards, delivers every row.
#[test]
fn cancel_ends_the_stream_of_its_request_and_credit_still_reaches_the_other() {
    let (_tunnel, mut gateway, config) = connector_and_gateway();
    let mut streams = [CreditedStream::new("r3", 9, WINDOW), CreditedStream::new("r9", 3, WINDOW)];
    for stream in &mut streams {
        stream.granting = false;
        gateway.send(stream.do_get("agg"));
    }
    gateway.serve(&mut streams, |s| s.iter().all(CreditedStream::waits_for_credit));

    gateway.send(json!({"action": "cancel", "request_id": "r3"}));
    gateway.serve(&mut streams, |s| s[0].end.is_some());
    assert_eq!(streams[0].error_code(), Some("cancelled"), "{:?}", streams[0].end);
    assert_eq!(streams[0].end.as_ref().map(|end| end["request_id"].clone()), Some(json!("r3")));
    assert!(streams[1].end.is_none(), "the other stream goes on: {:?}", streams[1].end);

    streams[1].granting = true;
    gateway.serve(&mut streams, |s| s[1].end.is_some());
    assert_whole_dataset(&streams[1], &config);
}

/// The connector's config with `gateway.uri` listing both listeners, one
/// tunnel, and a reconnect delay long enough to tell a move from a retry.
fn listing(first: &TcpListener, second: &TcpListener) -> Config {
    let uris: Vec<String> =
        [first, second].iter().map(|l| format!("ws://{}/ws/connect", l.local_addr().expect("addr"))).collect();
    let csv = testdata().join("csv").join("aggregate_test_100.csv");
    let yaml = json!({
        "gateway": {"uri": uris},
        "tenant": {"id": "t1"},
        "performance": {"parallel_connections": 1, "reconnect_delay": 30.0, "max_chunk_size": 4096, "min_chunk_size": 1024},
        "datasets": {"agg": {"type": "csv", "path": csv, "batch_rows": 10}},
    });
    Config::from_yaml(&yaml.to_string(), &testdata()).unwrap_or_else(|e| panic!("{e}"))
}

/// Turn `i` of a tunnel: the list round robin, and each round one address
/// further through a name's addresses.
#[test]
fn a_tunnels_turns_go_round_the_list_and_then_round_a_names_addresses() {
    use volley_connector::tunnel::Turn;
    let uris = vec!["ws://a/".to_owned(), "ws://b/".to_owned()];
    let targets: Vec<(&str, usize)> = (0..5).map(|i| Turn(i).target(&uris)).collect();
    assert_eq!(targets, vec![("ws://a/", 0), ("ws://b/", 0), ("ws://a/", 1), ("ws://b/", 1), ("ws://a/", 2)]);
    assert_eq!(Turn(1).next(), Turn(2));
    assert_eq!(Turn(3).target(&uris[..1]), ("ws://a/", 3));
}

/// PROTOCOL.md §4.2 `reconnect` while a stream runs: the connector registers
/// with the other listed gateway at once (its reconnect delay is 30 s),
/// keeps serving the running stream on the old tunnel to its end, and only
/// then closes the old tunnel with 1000.
#[test]
fn reconnect_moves_the_tunnel_at_once_and_the_old_one_closes_after_its_stream() {
    let first = TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = listing(&first, &second);
    let _tunnel = Tunnel::start(config.clone());
    let (mut old, _) = ScriptedGateway::accept_level2(&first);

    let mut stream = CreditedStream::new("r1", 5, WINDOW);
    old.send(stream.do_get("agg"));
    // The stream starts and waits for credit: then the gateway drains.
    old.serve(std::slice::from_mut(&mut stream), |s| s[0].waits_for_credit());
    let asked = Instant::now();
    old.send(json!({"action": "reconnect", "reason": "gateway draining", "grace_seconds": 20}));
    let (_new, register) = ScriptedGateway::accept_level2(&second);
    assert_eq!(register["tenant_id"], "t1");
    assert!(asked.elapsed() < Duration::from_secs(5), "moved after {:?}: not at once", asked.elapsed());

    // The old tunnel still serves its stream to the end, then closes.
    old.serve(std::slice::from_mut(&mut stream), |s| s[0].end.is_some());
    assert_whole_dataset(&stream, &config);
    let closed = match old.try_read() {
        Err(why) => why,
        Ok(message) => panic!("nothing more after the stream's end, got {message:?}"),
    };
    assert!(closed.contains("closed the socket") && closed.contains("Normal"), "{closed}");
}

/// With one gateway listed, `reconnect` does not move the tunnel at once:
/// it closes once its streams ended (here: none) and reconnects to the same
/// gateway after its reconnect delay.
#[test]
fn reconnect_with_no_other_gateway_closes_the_idle_tunnel_and_redials_after_the_delay() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let _tunnel = Tunnel::start(config(&listener));
    let (mut gateway, _) = ScriptedGateway::accept_level2(&listener);
    gateway.send(json!({"action": "reconnect", "reason": "gateway draining"}));
    let closed = gateway.try_read().expect_err("the idle tunnel closes");
    assert!(closed.contains("Normal"), "{closed}");
    let (_again, register) = ScriptedGateway::accept_level2(&listener);
    assert_eq!(register["tenant_id"], "t1");
}
