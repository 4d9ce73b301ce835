//! Which secret verifies what: the secret `--insecure-dev` makes up when no
//! `tableros_secret_key` is set, and `connector_secret_key`, which keeps
//! connector credentials apart from browser sessions (PROTOCOL.md §6).
//! Real gateways on real sockets.

use volley_engine::{GatewayConfig, StartOptions};
use volley_protocol::header::FrameKind;
use volley_protocol::token::{sign, SessionClaims};
use volley_testkit::browser::Browser;
use volley_testkit::engine::{config, start, wait_connectors};
use volley_testkit::fake_connector::{spawn_connector, ConnectorSpec, DatasetSpec};
use volley_testkit::http::session_verdict;
use volley_testkit::tokens::{connector_token_with, SECRET, TENANT};

/// The secret connector credentials are signed with when it is set apart.
const CONNECTOR_SECRET: &str = "volley-e2e-connector-only-secret";

fn insecure_dev_gateway() -> volley_engine::Gateway {
    let mut config = config();
    config.tableros_secret_key = None;
    volley_engine::start(config, StartOptions { insecure_dev: true, ..StartOptions::default() })
        .expect("--insecure-dev starts without a secret")
}

/// A session token for [`TENANT`] signed with `secret`.
fn session_signed_with(secret: &[u8]) -> String {
    let now = volley_engine::unix_now();
    let claims = SessionClaims {
        sub: "mallory".into(),
        cuenta_id: TENANT.into(),
        edge_id: String::new(),
        permisos: vec!["*".into()],
        jti: "forged".into(),
        iat: now - 10,
        exp: now + 3600,
        nbf: None,
        role: None,
    };
    sign(&claims, secret).expect("sign")
}

/// The secret used to be `insecure-dev-<pid>-<unix start second>`: the pid
/// is small and `/metrics.json` tells the start time, so a token forged
/// with it was accepted after a few hundred guesses. Two gateways started
/// by one process in the same second now get different secrets, neither
/// of them the old formula, and no token signed with that formula opens a
/// session.
#[test]
fn insecure_dev_secrets_are_random_not_derived_from_pid_and_start_time() {
    let before = volley_engine::unix_now();
    let first = insecure_dev_gateway();
    let second = insecure_dev_gateway();
    let after = volley_engine::unix_now();
    let secret = |gateway: &volley_engine::Gateway| {
        let secrets = &gateway.shared().secrets;
        assert_eq!(secrets.len(), 1, "one made-up secret");
        secrets[0].clone()
    };
    let (a, b) = (secret(&first), secret(&second));
    assert_ne!(a, b, "two gateways started in the same process share their secret");
    assert!(a.len() >= 32 && b.len() >= 32, "secrets of {} and {} bytes; 32 random bytes expected", a.len(), b.len());

    let pid = std::process::id();
    let mut guesses = 0;
    for second_started in before - 1..=after + 1 {
        let old_formula = format!("insecure-dev-{pid}-{second_started}").into_bytes();
        assert!(a != old_formula && b != old_formula, "the secret is the old pid/start-time formula");
        for gateway in [&first, &second] {
            guesses += 1;
            let (status, code, message) = session_verdict(gateway.local_addr(), &session_signed_with(&old_formula));
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "a token forged with the old formula was accepted after {guesses} guesses: {message}"
            );
        }
    }
    eprintln!("{guesses} tokens forged with the pid/start-time formula: all refused");
    // The gateway's own secret still works.
    let (status, ..) = session_verdict(first.local_addr(), &session_signed_with(&a));
    assert_eq!(status, 101);
}

/// With `connector_secret_key`, connector credentials verify with it alone
/// and browser sessions with `tableros_secret_key` alone: whoever can issue
/// browser sessions can no longer mint connector credentials, and a
/// connector credential's secret opens no browser session.
#[test]
fn connector_credentials_and_sessions_are_verified_with_separate_secrets() {
    let yaml = format!(
        "listen: 127.0.0.1:0\nworkers: 2\ntableros_secret_key: {SECRET}\nconnector_secret_key: {CONNECTOR_SECRET}\n"
    );
    let gateway = start(GatewayConfig::from_yaml(&yaml).expect("connector_secret_key is a gateway setting"));
    let addr = gateway.local_addr();
    let frames = || vec![(FrameKind::RecordBatch, bytes::Bytes::from_static(b"rows"))];

    // A credential signed with the session secret is refused at register.
    let mut spec = ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames())]);
    spec.token = Some(connector_token_with(TENANT, SECRET));
    let refused = spawn_connector(addr, spec);
    assert_eq!(refused.reply["status"], "error", "{}", refused.reply);
    assert_eq!(refused.reply["code"], "unauthorized", "{}", refused.reply);
    wait_connectors(&gateway, 0);

    // The connector secret registers it, and browsers read through it.
    let mut spec = ConnectorSpec::level2(vec![DatasetSpec::query("ventas", frames())]);
    spec.token = Some(connector_token_with(TENANT, CONNECTOR_SECRET));
    let connector = spawn_connector(addr, spec);
    assert_eq!(connector.reply["status"], "ok", "{}", connector.reply);
    wait_connectors(&gateway, 1);

    // A session signed with the connector secret is refused; the session secret opens one.
    let (status, code, message) = session_verdict(addr, &session_signed_with(CONNECTOR_SECRET.as_bytes()));
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    let mut browser = Browser::connect(addr, &session_signed_with(SECRET.as_bytes()), true);
    let result = browser.query("ventas", "q1");
    assert_eq!(result.error_code(), None, "{:?}", result.end);
    assert_eq!(result.bytes(), b"rows");
}
