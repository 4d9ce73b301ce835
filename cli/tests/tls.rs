//! TLS end to end: certificates generated at test time (a private CA and a
//! leaf for `localhost`), the gateway serving `wss://` and `https://`, the
//! real connector dialling `wss://` with `gateway.ca_file`, browsers over
//! rustls, a certificate swapped by SIGHUP while sessions stay open, and
//! tokens kept out of the gateway's logs.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use serde_json::json;
use volley_testkit::browser::Browser;
use volley_testkit::connector::InProcessConnector;
use volley_testkit::engine::{connectors_online, gateway_config, start};
use volley_testkit::files::{aggregate_csv, write_file, TempDir};
use volley_testkit::process::VolleyProcess;
use volley_testkit::pyarrow::pyarrow_compare;
use volley_testkit::tokens::{connector_token, session_token, SECRET};
use volley_testkit::wait_until;

/// The binary under test.
const VOLLEY: &str = env!("CARGO_BIN_EXE_volley");

const TENANT: &str = "acme";

/// A CA and a leaf certificate for `localhost` and 127.0.0.1 it signed.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_pem: String,
    leaf_der: CertificateDer<'static>,
    key_pem: String,
}

fn new_pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("Volley test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
    leaf_params.distinguished_name.push(DnType::CommonName, format!("volley gateway {name}"));
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).expect("leaf certificate");
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        leaf_pem: leaf.pem(),
        leaf_der: leaf.der().clone(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// Writes the gateway's certificate and key (replacing them) and the CA.
fn install(pki: &Pki, dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let cert = write_file(dir, "gateway.pem", pki.leaf_pem.as_bytes());
    let key = write_file(dir, "gateway.key", pki.key_pem.as_bytes());
    let ca = write_file(dir, "ca.pem", pki.ca_pem.as_bytes());
    (cert, key, ca)
}

/// A client configuration trusting exactly `roots`.
fn trusting(roots: &[&CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    // Full handshakes only: a resumed session reports the certificate of the
    // session it resumes, not the one the server holds now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The leaf certificate the server presented to `browser`.
fn presented(browser: &Browser) -> CertificateDer<'static> {
    match browser.ws.get_ref() {
        tungstenite::stream::MaybeTlsStream::Rustls(tls) => {
            tls.conn.peer_certificates().expect("peer certificates")[0].clone()
        }
        _ => panic!("not a TLS stream"),
    }
}

/// One HTTPS request (`GET path`) → status line and body.
fn https_get(addr: SocketAddr, path: &str, tls: Arc<rustls::ClientConfig>) -> (String, String) {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(tls, name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut text = String::new();
    // The gateway ends the response with close_notify, so read_to_string ends cleanly.
    stream.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

fn tls_gateway(cert: &Path, key: &Path) -> volley_engine::Gateway {
    let mut config = gateway_config(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.tls.cert = Some(cert.to_owned());
    config.tls.key = Some(key.to_owned());
    config.timeouts.connect_seconds = 2;
    start(config)
}

#[test]
fn connector_and_browsers_over_wss_get_the_source_table() {
    let dir = TempDir::new("tls-e2e");
    let pki = new_pki("one");
    let (cert, key, ca) = install(&pki, &dir);
    let gateway = tls_gateway(&cert, &key);
    let addr = gateway.local_addr();

    let datasets = json!({"ventas": {"type": "csv", "path": aggregate_csv()}});
    let yaml = json!({
        "gateway": {"uri": format!("wss://localhost:{}/ws/connect", addr.port()), "ca_file": ca},
        "tenant": {"id": TENANT, "token": connector_token(TENANT)},
        "performance": {"parallel_connections": 2, "reconnect_delay": 0.1},
        "datasets": datasets,
    })
    .to_string();
    let _connector = InProcessConnector::start(&yaml, dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || connectors_online(&gateway) >= 2),
        "the connector registered {} of 2 tunnels over wss://",
        connectors_online(&gateway)
    );

    let tls = trusting(&[&pki.ca_der]);
    let token = session_token(TENANT, &["ventas"]);
    for level2 in [true, false] {
        let mut browser = Browser::connect_tls(addr, "localhost", &token, level2, tls.clone());
        assert_eq!(presented(&browser), pki.leaf_der, "the configured certificate is served");
        let result = browser.query("ventas", "q1");
        assert_eq!(result.end.as_ref().map(|e| e["type"].clone()), Some(json!("stream_end")), "{:?}", result.end);
        let path = write_file(&dir, &format!("ventas-l{}.arrows", if level2 { 2 } else { 1 }), &result.bytes());
        let check = pyarrow_compare(&path, "csv", &aggregate_csv(), "c2");
        assert_eq!(check.rows, check.source_rows, "rows over wss://");
        assert!(check.rows > 0);
        assert!(check.mismatches.is_empty(), "columns differ: {:?}", check.mismatches);
    }

    // HTTPS on the same port.
    let (status, body) = https_get(addr, "/health", tls.clone());
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"connectors\""), "{body}");

    // Plain text to the TLS port is refused at the TLS layer; the gateway goes on.
    {
        use std::io::{Read, Write};
        let mut plain = TcpStream::connect(addr).expect("connect");
        plain.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "plain HTTP must not be served");
    }
    // A client that does not trust the CA fails its handshake.
    let stranger = trusting(&[&new_pki("other").ca_der]);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(stranger, name).expect("client");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let err = conn.complete_io(&mut tcp).expect_err("an unknown CA must fail");
    assert!(err.to_string().contains("UnknownIssuer") || err.to_string().contains("certificate"), "{err}");

    // A TLS handshake never finished is cut at connect_seconds (2 s here).
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(&mut silent, &mut byte).unwrap_or(0);
    assert_eq!(n, 0, "the gateway closes a silent TLS connection");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "closed after {took:?}");

    // After all that, sessions still work.
    let mut browser = Browser::connect_tls(addr, "localhost", &token, true, tls);
    assert_eq!(browser.list(), vec!["ventas".to_owned()]);
}

#[test]
fn a_connector_that_does_not_trust_the_gateway_says_why() {
    let dir = TempDir::new("tls-untrusted");
    let pki = new_pki("one");
    let (cert, key, _ca) = install(&pki, &dir);
    let gateway = tls_gateway(&cert, &key);
    let data = write_file(&dir, "t.csv", b"a,b\n1,x\n");
    // No ca_file: the system roots do not know this private CA.
    let yaml = json!({
        "gateway": {"uri": format!("wss://localhost:{}/ws/connect", gateway.local_addr().port())},
        "tenant": {"id": TENANT, "token": connector_token(TENANT)},
        "datasets": {"t": {"type": "csv", "path": data}},
    })
    .to_string();
    let config = write_file(&dir, "connector.yml", yaml.as_bytes());
    let mut process =
        VolleyProcess::spawn(VOLLEY, &["connector", "--config", config.to_str().expect("utf-8"), "--test"]);
    let code = process.wait_exit(Duration::from_secs(30));
    let output = process.output();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("UnknownIssuer") || output.contains("certificate"), "the reason is named:\n{output}");
    assert_eq!(connectors_online(&gateway), 0);

    // A ca_file that holds no certificate is refused when the config loads.
    let bad = write_file(&dir, "empty.pem", b"not a certificate\n");
    let yaml = json!({
        "gateway": {"uri": "wss://localhost:1/ws/connect", "ca_file": bad},
        "tenant": {"id": TENANT},
        "datasets": {"t": {"type": "csv", "path": data}},
    })
    .to_string();
    let err = volley_connector::Config::from_yaml(&yaml, dir.path()).expect_err("empty CA file");
    assert!(err.to_string().contains("gateway.ca_file"), "{err}");
}

#[test]
fn sighup_swaps_the_certificate_and_open_sessions_survive() {
    let dir = TempDir::new("tls-reload");
    let first = new_pki("first");
    let (cert, key, _) = install(&first, &dir);
    let yaml = json!({
        "listen": "127.0.0.1:0",
        "workers": 2,
        "tableros_secret_key": SECRET,
        "tls": {"cert": cert, "key": key},
    })
    .to_string();
    let (gateway, url) = VolleyProcess::gateway(VOLLEY, &dir, &yaml, "debug");
    let addr: SocketAddr = url.strip_prefix("https://").expect("an https listener").parse().expect("address");
    let second = new_pki("second");
    let tls = trusting(&[&first.ca_der, &second.ca_der]);
    let token = session_token(TENANT, &["ventas"]);
    let mut open = Browser::connect_tls(addr, "localhost", &token, true, tls.clone());
    assert_eq!(presented(&open), first.leaf_der);

    install(&second, &dir);
    gateway.signal("-HUP");
    assert!(
        wait_until(Duration::from_secs(5), || gateway.output().contains("TLS certificate and key reloaded")),
        "no reload logged:\n{}",
        gateway.output()
    );
    let fresh = Browser::connect_tls(addr, "localhost", &token, true, tls.clone());
    assert_eq!(presented(&fresh), second.leaf_der, "new handshakes get the new certificate");
    // The session opened before the reload still answers.
    assert!(open.list().is_empty(), "no connector: an empty list, from a live session");

    // A broken file on reload: logged, and the last good certificate stays.
    write_file(&dir, "gateway.pem", b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
    gateway.signal("-HUP");
    assert!(
        wait_until(Duration::from_secs(5), || gateway.output().contains("TLS reload failed")),
        "no failure logged:\n{}",
        gateway.output()
    );
    let after = Browser::connect_tls(addr, "localhost", &token, true, tls.clone());
    assert_eq!(presented(&after), second.leaf_der, "a failed reload keeps serving the previous pair");

    // Refused and admitted tokens alike never reach the log, even at debug.
    let forged = format!("{token}x");
    let (status, _) = https_get(addr, &format!("/stream/{forged}"), tls);
    assert!(status.contains("401") || status.contains("400"), "{status}");
    let output = gateway.output();
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!output.contains(signature), "a session token reached the log:\n{output}");
    assert!(output.contains("<redacted"), "request lines are logged, redacted:\n{output}");
}
