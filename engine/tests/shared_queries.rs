//! PROTOCOL.md §5.1, shared queries: identical queries of a tenant issued
//! while an upstream stream for them runs read that one stream, each from
//! its first frame at its own pace, through the stream's bounded log
//! (`share_log.rs`); a query after the log dropped a frame, another
//! tenant's and a forbidden one never join; `queries.reuse_seconds` answers
//! from a completed stream. Real sockets, the in-process gateway, the fake
//! connector (which records every `do_get`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use volley_protocol::header::FrameKind;
use volley_testkit::browser::{stalled_browser, Browser, Received};
use volley_testkit::engine::{config, max_sampler, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, Behaviour, ConnectorSpec, DatasetSpec};
use volley_testkit::ipc::synthetic_frames;
use volley_testkit::tokens::{session_token, session_token_with, unix_now, SECRET, TENANT};

const TIMEOUT: Duration = Duration::from_secs(60);

fn table(frames: &[(FrameKind, Bytes)]) -> Vec<u8> {
    frames.iter().flat_map(|(_, body)| body.iter().copied()).collect()
}

/// Sends `query` for `dataset` as query id `q`.
fn ask(browser: &mut Browser, dataset: &str) {
    browser.send(json!({"action": "query", "dataset": dataset, "query_id": "q"}));
}

/// Reads messages until `bytes` binary bytes arrived.
fn read_at_least(browser: &mut Browser, bytes: usize) {
    let mut got = 0;
    while got < bytes {
        match browser.next(Duration::from_secs(10)) {
            Some(Received::Binary(data)) => got += data.len(),
            Some(Received::Json(v)) => assert_ne!(v["type"], "error", "{v}"),
            other => panic!("expected frames, got {other:?}"),
        }
    }
}

#[test]
fn three_hundred_identical_queries_read_one_upstream_stream_and_a_slow_reader_holds_no_one_back() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    // 64 frames of 16 KiB, one every 5 ms: the stream runs for about 0.3 s,
    // long after the 300 queries were sent.
    let frames = synthetic_frames(64, 16 * 1024);
    let dataset = DatasetSpec::query("ventas", frames.clone()).with(Behaviour::Paced(5));
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![dataset]));
    wait_connectors(&gateway, 1);
    let (stop, most_held) = max_sampler(&gateway, |shared| shared.registry.share.held.load(Ordering::Relaxed));

    let token = session_token(TENANT, &["ventas"]);
    // The first to ask never reads until everybody else is done: its
    // socket buffer is tiny, so what it does not read waits in the gateway.
    let mut slow = stalled_browser(addr, &token);
    ask(&mut slow, "ventas");
    let mut browsers: Vec<Browser> = (0..299).map(|i| Browser::connect(addr, &token, i % 2 == 0)).collect();
    for browser in &mut browsers {
        ask(browser, "ventas");
    }
    let expected = table(&frames);
    for (i, browser) in browsers.iter_mut().enumerate() {
        let result = browser.collect("q", TIMEOUT);
        assert_eq!(result.error_code(), None, "browser {i}: {:?}", result.end);
        assert!(result.bytes() == expected, "browser {i} (level {}) got another table", 2 - i % 2);
        if i % 2 == 0 {
            let sequences: Vec<u64> = result.headers.iter().map(|h| h.sequence).collect();
            assert_eq!(sequences, (0..64).collect::<Vec<u64>>(), "browser {i}: every frame, in order, once");
        }
    }
    // Everybody else finished while the slow one had read nothing: it held
    // no one back. Now it reads, and still gets the whole table.
    let result = slow.collect("q", TIMEOUT);
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.bytes() == expected, "the slow reader got the whole table");

    stop.store(true, Ordering::Release);
    let most_held = most_held.join().expect("sampler");
    let do_gets = connector.commands("do_get").len();
    // The bound allowed: one stream, or two if a query's join raced the
    // first stream's end (it runs for 0.3 s; the queries go out in a few ms).
    assert!(do_gets <= 2, "the connector was asked {do_gets} times for 300 identical queries");
    let share = &gateway.shared().registry.share;
    assert_eq!(
        usize::try_from(share.joins.load(Ordering::Relaxed)).expect("usize"),
        300 - do_gets,
        "every other query joined"
    );
    let bound = config().queries.share_log_bytes;
    assert!(most_held <= bound, "the log held {most_held} bytes, over its bound of {bound}");
    assert!(most_held >= expected.len(), "the log held the table while the slow reader had not read it");
    volley_testkit::wait_until(Duration::from_secs(5), || share.held.load(Ordering::Relaxed) == 0);
    assert_eq!(share.held.load(Ordering::Relaxed), 0, "every reader done: the log is gone");
    assert_eq!(share.reserved.load(Ordering::Relaxed), 0, "and its reservation given back");
}

#[test]
fn a_query_after_the_log_passed_its_bound_gets_the_whole_table_through_its_own_stream() {
    let mut config = config();
    config.limits.credit_bytes = 64 * 1024;
    config.queries.share_log_bytes = 128 * 1024;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let frames = synthetic_frames(64, 16 * 1024);
    let dataset = DatasetSpec::query("big", frames.clone()).with(Behaviour::Paced(3));
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![dataset]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["big"]);

    let mut first = Browser::connect(addr, &token, true);
    ask(&mut first, "big");
    // 320 KiB read: the 128 KiB log has dropped what it had read.
    read_at_least(&mut first, 320 * 1024);
    let mut second = Browser::connect(addr, &token, true);
    let result = second.query("big", "late");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert!(result.bytes() == table(&frames), "the late query got the whole table from its first frame");
    assert_eq!(connector.commands("do_get").len(), 2, "it could not join: it had its own stream");
    assert_eq!(gateway.shared().registry.share.joins.load(Ordering::Relaxed), 0);
    let rest = first.collect("q", TIMEOUT);
    assert_eq!(rest.error_code(), None, "{:?}", rest.end);
}

#[test]
fn identical_names_in_two_tenants_and_a_forbidden_dataset_never_share() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let ours = synthetic_frames(40, 8 * 1024);
    let theirs = synthetic_frames(24, 4 * 1024);
    let ventas = |frames: &Vec<(FrameKind, Bytes)>| {
        vec![
            DatasetSpec::query("ventas", frames.clone()).with(Behaviour::Paced(5)),
            DatasetSpec::query("nominas", frames.clone()).with(Behaviour::Paced(5)),
        ]
    };
    let acme = spawn_connector(addr, ConnectorSpec::level2(ventas(&ours)));
    let globex = spawn_connector(addr, ConnectorSpec::level2(ventas(&theirs)).of_tenant("globex"));
    wait_connectors(&gateway, 2);

    let mut a = Browser::connect(addr, &session_token(TENANT, &["ventas", "nominas"]), true);
    let mut b = Browser::connect(addr, &session_token("globex", &["ventas"]), true);
    let mut nosy = Browser::connect(addr, &session_token(TENANT, &["ventas"]), true);
    a.send(json!({"action": "query", "dataset": "ventas", "query_id": "v"}));
    a.send(json!({"action": "query", "dataset": "nominas", "query_id": "n"}));
    ask(&mut b, "ventas");
    // Same tenant, same dataset, running: but this token may not read it.
    nosy.send(json!({"action": "query", "dataset": "nominas", "query_id": "n"}));
    let refused = nosy.next_json(Duration::from_secs(5));
    assert_eq!(refused["code"], "dataset_forbidden", "{refused}");

    let (mut ventas_a, mut nominas_a) = (None, None);
    while ventas_a.is_none() || nominas_a.is_none() {
        // Two queries on one socket: collect them in turn by id.
        let v = a.next(TIMEOUT);
        match v {
            Some(Received::Json(v)) if v["type"] == "stream_end" => {
                assert!(v["error"].is_null(), "{v}");
                match v["query_id"].as_str() {
                    Some("v") => ventas_a = Some(v["total_bytes"].as_u64()),
                    Some("n") => nominas_a = Some(v["total_bytes"].as_u64()),
                    _ => panic!("{v}"),
                }
            }
            Some(Received::Json(v)) => assert_ne!(v["type"], "error", "{v}"),
            Some(_) => {}
            None => panic!("tenant acme's queries did not end"),
        }
    }
    let result = b.collect("q", TIMEOUT);
    assert!(result.bytes() == table(&theirs), "globex got its own connector's table, not acme's");
    assert_eq!(acme.commands("do_get").len(), 2, "acme: one stream per dataset");
    assert_eq!(globex.commands("do_get").len(), 1, "globex: its own stream");
    assert_eq!(gateway.shared().registry.share.joins.load(Ordering::Relaxed), 0, "nobody joined across");
}

#[test]
fn reuse_seconds_answers_an_identical_query_from_the_completed_stream_until_it_expires() {
    let mut config = config();
    config.queries.reuse_seconds = 2;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let frames = synthetic_frames(16, 4 * 1024);
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames.clone())]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ventas"]);

    let first = Browser::connect(addr, &token, true).query("ventas", "first");
    assert!(first.bytes() == table(&frames));
    let done = Instant::now();
    let mut level1 = Browser::connect(addr, &token, false);
    let again = level1.query("ventas", "again");
    assert!(done.elapsed() < Duration::from_secs(2), "asked within reuse_seconds");
    assert_eq!(again.error_code(), None, "{:?}", again.end);
    assert!(again.bytes() == table(&frames), "the kept stream, replayed whole to a level-1 page");
    assert_eq!(connector.commands("do_get").len(), 1, "the connector was not asked again");
    let share = &gateway.shared().registry.share;
    assert_eq!(share.reuses.load(Ordering::Relaxed), 1);
    assert!(share.held.load(Ordering::Relaxed) > 0, "kept");

    // Past reuse_seconds the sweep forgets it: the next query asks the connector.
    assert!(volley_testkit::wait_until(Duration::from_secs(5), || share.reserved.load(Ordering::Relaxed) == 0));
    assert_eq!(share.held.load(Ordering::Relaxed), 0);
    let late = Browser::connect(addr, &token, true).query("ventas", "late");
    assert!(late.bytes() == table(&frames));
    assert_eq!(connector.commands("do_get").len(), 2);
}

#[test]
fn readers_leaving_a_shared_stream_cancel_it_upstream_only_when_the_last_one_goes() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    let frames = synthetic_frames(400, 4 * 1024);
    let dataset = DatasetSpec::query("ventas", frames).with(Behaviour::Paced(5));
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![dataset]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ventas"]);
    let mut a = Browser::connect(addr, &token, true);
    let mut b = Browser::connect(addr, &token, true);
    ask(&mut a, "ventas");
    read_at_least(&mut a, 8 * 1024);
    ask(&mut b, "ventas");
    read_at_least(&mut b, 8 * 1024);
    assert_eq!(connector.commands("do_get").len(), 1, "b joined a's stream");

    a.send(json!({"action": "cancel", "query_id": "q"}));
    std::thread::sleep(Duration::from_millis(300));
    assert!(connector.commands("cancel").is_empty(), "b still reads: the stream goes on");
    read_at_least(&mut b, 16 * 1024);
    drop(b);
    assert!(connector.wait_command("cancel", Duration::from_secs(5)).is_some(), "the last reader left: cancelled");
    let share = &gateway.shared().registry.share;
    assert!(volley_testkit::wait_until(Duration::from_secs(5), || share.reserved.load(Ordering::Relaxed) == 0));
    assert_eq!(share.held.load(Ordering::Relaxed), 0, "nobody reads it: its log is gone");
}

#[test]
fn a_thousand_queries_over_sixteen_stream_slots_all_succeed_by_sharing_or_waiting() {
    let mut config = config();
    config.limits.streams_per_connector_max = 16;
    let gateway = start(config);
    let addr = gateway.local_addr();
    // 40 datasets, 25 browsers each: more datasets than slots, so some
    // queries wait in the admission queue and join when their turn comes.
    let frames = synthetic_frames(8, 8 * 1024);
    let datasets: Vec<DatasetSpec> =
        (0..40).map(|d| DatasetSpec::query(&format!("d{d}"), frames.clone()).with(Behaviour::Paced(2))).collect();
    let connector = spawn_connector(addr, ConnectorSpec::level2(datasets));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["*"]);
    let expected = table(&frames);

    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (token, expected) = (token.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut browsers: Vec<Browser> = (0..250).map(|i| Browser::connect(addr, &token, i % 4 != 0)).collect();
                for (i, browser) in browsers.iter_mut().enumerate() {
                    ask(browser, &format!("d{}", (t * 250 + i) % 40));
                }
                for (i, browser) in browsers.iter_mut().enumerate() {
                    let result = browser.collect("q", TIMEOUT);
                    assert_eq!(result.error_code(), None, "browser {t}/{i}: {:?}", result.end);
                    assert!(result.bytes() == expected, "browser {t}/{i} got another table");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("every browser got its table");
    }
    let do_gets = connector.commands("do_get").len();
    let share = &gateway.shared().registry.share;
    assert_eq!(
        usize::try_from(share.joins.load(Ordering::Relaxed)).expect("usize") + do_gets,
        1000,
        "each query joined or had its own"
    );
    assert!(do_gets < 1000, "sharing saved upstream streams ({do_gets} for 1000 queries)");
}

/// Waits up to `timeout` for `query_id`'s `stream_end` (or error); returns
/// it, with the binary bytes that came before, or `None` when nothing ended.
fn wait_end(browser: &mut Browser, query_id: &str, timeout: Duration) -> Option<(serde_json::Value, usize)> {
    let deadline = Instant::now() + timeout;
    let mut bytes = 0;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match browser.next(left) {
            Some(Received::Json(v))
                if (v["type"] == "stream_end" || v["type"] == "error") && v["query_id"] == query_id =>
            {
                return Some((v, bytes));
            }
            Some(Received::Json(_)) => {}
            Some(Received::Binary(data)) => bytes += data.len(),
            Some(Received::Close(code)) => panic!("closed: {code:?}"),
            None => return None,
        }
    }
}

/// A hostile connector sends a shared query's stream as tiny frames (a
/// 16-byte header and a 16-byte body each), all within its credit, while
/// the reader's ring is full. Credit counts payload bytes and the log
/// counts each frame's bookkeeping too (7x here), so the log passes its
/// bound within one credit window: the tunnel is then not read until
/// readers made room, and the log stays within its bound (and one frame).
#[test]
fn tiny_frames_within_credit_keep_a_shared_log_within_its_bound() {
    let mut config = config();
    config.limits.credit_bytes = 64 * 1024;
    config.queries.share_log_bytes = 128 * 1024;
    config.rings.session_bytes_max = 1 << 20;
    let bound = config.queries.share_log_bytes;
    let gateway = start(config);
    let addr = gateway.local_addr();
    // "big" fills the reader's ring (1 MiB) to within 1 KiB, so that it
    // takes (almost) nothing of "tiny".
    let big = synthetic_frames(3072, 1024);
    // 2048 frames of 16 + 16 bytes: exactly the 64 KiB of initial credit.
    let tiny: Vec<(FrameKind, Bytes)> =
        (0..2048).map(|_| (FrameKind::RecordBatch, Bytes::from_static(&[7u8; 16]))).collect();
    let connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![DatasetSpec::query("big", big), DatasetSpec::query("tiny", tiny)]),
    );
    wait_connectors(&gateway, 1);
    let (stop, most_held) = max_sampler(&gateway, |shared| shared.registry.share.held.load(Ordering::Relaxed));

    let token = session_token(TENANT, &["big", "tiny"]);
    let mut slow = stalled_browser(addr, &token);
    slow.send(json!({"action": "query", "dataset": "big", "query_id": "b"}));
    std::thread::sleep(Duration::from_secs(2));
    slow.send(json!({"action": "query", "dataset": "tiny", "query_id": "t"}));
    assert!(connector.wait_command("do_get", Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    let most_held = most_held.join().expect("sampler");
    eprintln!(
        "most held {most_held}, now {}, ring data {}, do_gets {:?}",
        gateway.shared().registry.share.held.load(Ordering::Relaxed),
        gateway.shared().ring_totals.data.load(Ordering::Relaxed),
        connector.commands("do_get").len()
    );
    // Two logs (big's and tiny's), each bounded by share_log_bytes.
    assert!(
        most_held <= 2 * bound,
        "two shared logs held {most_held} bytes together, over 2 x share_log_bytes = {} (tiny frames within credit)",
        2 * bound
    );
}

/// Two readers share a stream larger than the log; the one that does not
/// read fills its ring and holds the log at its bound, so the connector has
/// no credit. Then it leaves (its socket closes): the room it held goes
/// upstream as credit at once, though the remaining reader, its ring empty,
/// writes nothing that would pull (no heartbeat either: 600 s here).
#[test]
fn a_slow_reader_leaving_lets_the_others_go_on_at_once() {
    let mut config = config();
    config.limits.credit_bytes = 64 * 1024;
    config.queries.share_log_bytes = 1 << 20;
    config.limits.heartbeat_seconds = 600;
    config.timeouts.query_seconds = 120;
    let gateway = start(config);
    let addr = gateway.local_addr();
    // 16 MiB: more than the slow reader's ring and socket and the log hold.
    // One frame every 2 ms, so the second query joins while the log still
    // holds the stream from its first frame (a log whose lead reader
    // passed its bound takes no one: the second query would get a stream
    // of its own).
    let frames = synthetic_frames(1024, 16 * 1024);
    let dataset = DatasetSpec::query("ventas", frames.clone()).with(Behaviour::Paced(2));
    let connector = spawn_connector(addr, ConnectorSpec::level2(vec![dataset]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ventas"]);

    let mut slow = stalled_browser(addr, &token);
    slow.send(json!({"action": "query", "dataset": "ventas", "query_id": "q"}));
    let mut fast = Browser::connect(addr, &token, true);
    fast.send(json!({"action": "query", "dataset": "ventas", "query_id": "q"}));
    // Fast reads until nothing comes for a second: the slow one holds the log.
    let mut got = 0;
    loop {
        match fast.next(Duration::from_secs(1)) {
            Some(Received::Binary(data)) => got += data.len(),
            Some(Received::Json(v)) => assert_ne!(v["type"], "stream_end", "ended before the stall: {v}"),
            Some(other) => panic!("{other:?}"),
            None => break,
        }
    }
    assert!(got < table(&frames).len(), "the slow reader held the stream back ({got} bytes read)");
    assert_eq!(connector.commands("do_get").len(), 1, "one upstream stream");
    drop(slow);
    let ended = wait_end(&mut fast, "q", Duration::from_secs(10));
    let Some((end, rest)) = ended else {
        panic!("after the slow reader left, the fast one got nothing for 10 s (it had read {got} bytes)")
    };
    assert!(end["error"].is_null(), "{end}");
    assert_eq!(got + rest, table(&frames).len() + 16 * 1024, "frames plus their 16-byte headers");
}

/// A queued query whose session is closing when its turn comes (here: its
/// token expired and it does not read, so its close frame cannot be written
/// and the session lingers for CLOSE_GRACE) gets a new shared stream from
/// `admit_waiting`, and the identical query queued behind it joins that
/// stream in the same pass. The closing session's worker leaves the stream
/// before its `Open` was sent: it must still be opened for the joiner.
#[test]
fn joiners_of_a_new_stream_whose_first_waiter_left_still_get_their_table() {
    let mut config = config();
    config.limits.streams_per_connector_max = 2;
    config.limits.protocol.token_leeway_seconds = 0;
    let gateway = start(config);
    let addr = gateway.local_addr();
    let x = synthetic_frames(16, 4 * 1024);
    let connector = spawn_connector(
        addr,
        ConnectorSpec::level2(vec![
            DatasetSpec::query("hold1", synthetic_frames(3000, 256)).with(Behaviour::Paced(3)),
            DatasetSpec::query("hold2", synthetic_frames(1500, 32 * 1024)).with(Behaviour::Paced(3)),
            DatasetSpec::query("x", x.clone()),
        ]),
    );
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["*"]);
    let registry = &gateway.shared().registry;

    // b1 and b2 hold both stream slots; b2 reads hold2 to its end.
    let mut b1 = Browser::connect(addr, &token, true);
    b1.send(json!({"action": "query", "dataset": "hold1", "query_id": "h1"}));
    let mut b2 = Browser::connect(addr, &token, true);
    b2.send(json!({"action": "query", "dataset": "hold2", "query_id": "h2"}));
    let b2 = std::thread::spawn(move || b2.collect("h2", Duration::from_secs(60)));
    assert!(volley_testkit::wait_until(Duration::from_secs(5), || connector.commands("do_get").len() == 2));
    // h (never reads) queues for x, then joins hold2, which fills its
    // socket and ring; its token expires in two or three seconds.
    let exp = unix_now() + 2;
    let short = session_token_with(TENANT, &["*"], exp, SECRET);
    let mut h = stalled_browser(addr, &short);
    h.send(json!({"action": "query", "dataset": "x", "query_id": "q"}));
    assert!(volley_testkit::wait_until(Duration::from_secs(5), || registry.queued_queries.load(Ordering::Relaxed) == 1));
    h.send(json!({"action": "query", "dataset": "hold2", "query_id": "a"}));
    // v queues for x behind it.
    let mut v = Browser::connect(addr, &token, true);
    v.send(json!({"action": "query", "dataset": "x", "query_id": "q"}));
    assert!(volley_testkit::wait_until(Duration::from_secs(5), || registry.queued_queries.load(Ordering::Relaxed) == 2));
    // h's session is closing (token expired at exp + 1; it is killed 2 s
    // later, CLOSE_GRACE): a slot frees now.
    let closing_at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(exp).unwrap() * 1000 + 1400);
    while std::time::SystemTime::now() < closing_at {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(registry.queued_queries.load(Ordering::Relaxed), 2, "h still queued");
    b1.send(json!({"action": "cancel", "query_id": "h1"}));
    let ended = wait_end(&mut v, "q", Duration::from_secs(10));
    let do_gets: Vec<_> = connector.commands("do_get");
    let Some((end, bytes)) = ended else {
        panic!("v got nothing in 10 s: its stream was never opened upstream (do_gets: {do_gets:?})")
    };
    assert!(end["error"].is_null(), "{end}");
    assert_eq!(bytes, table(&x).len() + 16 * 16, "v got x");
    drop(h);
    let _ = b2.join();
}

#[test]
fn a_seed_style_connectors_stream_is_shared_too() {
    let gateway = start(config());
    let addr = gateway.local_addr();
    // Level 1: arbitrary chunks of one IPC stream, paced by the gateway's
    // reading (credit returned by the log), one stream at a time.
    let frames = synthetic_frames(48, 8 * 1024);
    let dataset = DatasetSpec::query("ventas", frames.clone()).with(Behaviour::Paced(5));
    let connector = spawn_connector(addr, ConnectorSpec::level1(vec![dataset]));
    wait_connectors(&gateway, 1);
    let token = session_token(TENANT, &["ventas"]);
    let mut browsers: Vec<Browser> = (0..20).map(|i| Browser::connect(addr, &token, i % 2 == 0)).collect();
    for browser in &mut browsers {
        ask(browser, "ventas");
    }
    for (i, browser) in browsers.iter_mut().enumerate() {
        let result = browser.collect("q", TIMEOUT);
        assert_eq!(result.error_code(), None, "browser {i}: {:?}", result.end);
        assert!(result.bytes() == table(&frames), "browser {i} got the whole stream");
    }
    let do_gets = connector.commands("do_get").len();
    assert!((1..=2).contains(&do_gets), "a seed-style connector was asked {do_gets} times for 20 identical queries");
}
