//! Memory an unauthenticated tunnel can make the gateway hold (ARCHITECTURE.md's
//! worst-case memory, item 3). Until `register` succeeds, `/ws/connect` accepts nothing larger
//! than a control message: a frame header announcing more is refused with
//! 1009 on the header, before anything is allocated for the frame, and the
//! socket reads into a small buffer. Once registered, the connector frame
//! limit applies. The gateway runs in this process, so a counting allocator
//! sees what it allocates.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use volley_protocol::header::FrameKind;
use volley_protocol::ws::{encode_masked_frame, OpCode};
use volley_testkit::browser::spawn_live_clients;
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::heap;
use volley_testkit::http::{raw_close_code, raw_upgrade};
use volley_testkit::tokens::TENANT;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Unauthenticated sockets opened at once (the figure).
const SOCKETS: usize = 10;
/// The payload length their frame headers announce: the connector frame limit.
const ANNOUNCED_BYTES: u64 = 16 << 20;
/// Heap the gateway may hold per unauthenticated socket that sent such a
/// header: its connection task and state, the upgrade's leftover buffer and
/// the small register read buffer — nothing sized by the announced frame.
const PER_SOCKET_HEAP_BYTES_MAX: i64 = 64 * 1024;
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// The 14 header bytes of a masked frame announcing `len` payload bytes.
fn header_announcing(opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![0x80 | opcode, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&MASK);
    header
}

#[test]
fn an_unregistered_tunnel_announcing_a_16_mib_frame_is_closed_1009_before_anything_is_allocated_for_it() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    // Warm up: the workers' first connections, tables and pools.
    for _ in 0..4 {
        let mut socket = raw_upgrade(addr, "/ws/connect");
        socket.write_all(&encode_masked_frame(OpCode::Ping, b"", MASK)).expect("ping");
        let _ = raw_close_code(&mut socket);
    }
    std::thread::sleep(Duration::from_millis(200));

    let before = heap::reset_peak();
    let rss_before = heap::rss_bytes();
    let mut sockets: Vec<TcpStream> = (0..SOCKETS)
        .map(|i| {
            let mut socket = raw_upgrade(addr, "/ws/connect");
            // Binary and text alike: neither is a register that fits.
            let opcode = if i % 2 == 0 { 0x2 } else { 0x1 };
            socket.write_all(&header_announcing(opcode, ANNOUNCED_BYTES)).expect("write header");
            socket
        })
        .collect();
    // Give a gateway that would wait for the payload time to allocate for it.
    std::thread::sleep(Duration::from_millis(300));
    let codes: Vec<Option<u16>> = sockets
        .iter_mut()
        .map(|socket| {
            socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            raw_close_code(socket)
        })
        .collect();
    let peak = heap::peak_bytes() - before;
    let rss = heap::rss_bytes() - rss_before;
    println!(
        "{SOCKETS} unauthenticated sockets each announcing a {ANNOUNCED_BYTES}-byte frame: peak heap +{peak} bytes \
         ({} per socket), VmRSS +{rss} bytes; close codes {codes:?}",
        peak / SOCKETS as i64
    );
    assert!(
        peak <= PER_SOCKET_HEAP_BYTES_MAX * SOCKETS as i64,
        "the gateway allocated {peak} bytes for {SOCKETS} unauthenticated sockets (at most {} each)",
        PER_SOCKET_HEAP_BYTES_MAX
    );
    assert!(codes.iter().all(|code| *code == Some(1009)), "every socket is closed with 1009: {codes:?}");
    drop(sockets);

    // A register over the control-message limit is refused the same way.
    let mut socket = raw_upgrade(addr, "/ws/connect");
    let register = json!({"action": "register", "tenant_id": TENANT, "version": "0", "datasets": ["x"],
                          "padding": "p".repeat(70 * 1024)});
    socket.write_all(&encode_masked_frame(OpCode::Text, register.to_string().as_bytes(), MASK)).expect("write");
    assert_eq!(raw_close_code(&mut socket), Some(1009), "a 70 KiB register");
    gateway.shutdown();
}

#[test]
fn a_long_register_still_fits_and_once_registered_the_connector_frame_limit_applies() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    // A register of some 40 KiB (far more than the small register read
    // buffer, less than the control-message limit): 300 live datasets.
    let mut datasets: Vec<DatasetSpec> = (0..300).map(|i| DatasetSpec::live(&format!("{i:0>60}"))).collect();
    datasets.push(DatasetSpec::live("ticker"));
    let connector = spawn_connector(addr, ConnectorSpec::level2(datasets));
    assert_eq!(connector.reply["status"], "ok", "{}", connector.reply);
    wait_connectors(&gateway, 1);

    // A 1 MiB frame, over the pre-register limit, reaches a subscriber.
    let frames = std::sync::Arc::new(vec![(FrameKind::RecordBatch, Bytes::from(vec![7u8; 1 << 20]))]);
    let clients = spawn_live_clients(addr, "ticker", vec![(1, true)], frames.clone());
    clients.wait_ready(Duration::from_secs(10));
    for (kind, body) in frames.iter() {
        connector.live_frame("ticker", *kind, body.clone());
    }
    assert_eq!(clients.join(), 1, "the subscriber got the 1 MiB frame");
    assert!(connector.alive.load(std::sync::atomic::Ordering::Acquire), "the tunnel is still open");
    gateway.shutdown();
}
