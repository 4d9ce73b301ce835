//! `volley token` as a user runs it: the real binary, its stdout checked by an
//! independent JWT implementation (PyJWT, through `python3`), so a bug shared
//! by our signer and our verifier cannot hide. Also: every subcommand's
//! `--help` exits 0 and says what the subcommand does.
//!
//! Needs `python3` with `jwt` (PyJWT) importable; `scripts/test.sh` installs it.

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const SECRET: &str = "test-secret-of-reasonable-length";

/// Decodes a token with PyJWT. Prints `{"claims":…,"header":…}` on success,
/// `{"error":"<exception class>"}` on refusal.
const PYJWT_DECODE: &str = r#"
import json, os, sys
import jwt
token, secret = os.environ["TOKEN"], os.environ["SECRET"]
try:
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    print(json.dumps({"claims": claims, "header": jwt.get_unverified_header(token)}))
except jwt.InvalidTokenError as e:
    print(json.dumps({"error": type(e).__name__}))
"#;

fn volley(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(args)
        .env_remove("VOLLEY_SECRET")
        .env_remove("RUST_LOG")
        .output()
        .expect("the volley binary runs")
}

/// Runs `volley token ARGS`, asserts success, and returns the token, checking
/// that stdout holds the token and nothing else.
fn token(args: &[&str]) -> String {
    let mut full = vec!["token"];
    full.extend_from_slice(args);
    let output = volley(&full);
    assert!(output.status.success(), "volley {full:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    stdout_token(&output)
}

fn stdout_token(output: &Output) -> String {
    let stdout = String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8");
    let token = stdout.strip_suffix('\n').expect("stdout ends with one newline");
    assert!(!token.contains(char::is_whitespace), "stdout holds only the token: {stdout:?}");
    assert_eq!(token.split('.').count(), 3, "a compact JWT has three parts: {token:?}");
    token.to_owned()
}

fn pyjwt(token: &str, secret: &str) -> Value {
    let output = Command::new("python3")
        .args(["-c", PYJWT_DECODE])
        .env("TOKEN", token)
        .env("SECRET", secret)
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "PyJWT check failed to run (is pyjwt installed? `pip install pyjwt`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the python helper prints JSON")
}

fn verified_claims(token: &str) -> Value {
    let decoded = pyjwt(token, SECRET);
    assert_eq!(decoded["header"], json!({"alg": "HS256", "typ": "JWT"}), "{decoded}");
    decoded["claims"].clone()
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn claim_names(claims: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = claims.as_object().expect("claims are an object").keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

fn assert_random_jti(claims: &Value) {
    let jti = claims["jti"].as_str().expect("jti is a string");
    assert_eq!(jti.len(), 32, "128 bits as hex: {jti}");
    assert!(jti.bytes().all(|c| c.is_ascii_hexdigit()), "{jti}");
}

#[test]
fn session_token_carries_every_claim_and_verifies_with_pyjwt() {
    let before = now();
    let token = token(&[
        "--secret",
        SECRET,
        "--tenant",
        "abc-123",
        "--user",
        "ana",
        "--datasets",
        "ventas,ticker",
        "--edge",
        "edge-1",
        "--ttl",
        "600",
    ]);
    let after = now();
    let claims = verified_claims(&token);
    assert_eq!(claim_names(&claims), ["cuenta_id", "edge_id", "exp", "iat", "jti", "permisos", "sub"]);
    assert_eq!(claims["sub"], "ana");
    assert_eq!(claims["cuenta_id"], "abc-123");
    assert_eq!(claims["edge_id"], "edge-1");
    assert_eq!(claims["permisos"], json!(["ventas", "ticker"]));
    assert_random_jti(&claims);
    let iat = claims["iat"].as_i64().expect("iat is an integer");
    assert!((before..=after).contains(&iat), "iat {iat} is now ({before}..={after})");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 600));
}

#[test]
fn session_token_defaults_all_datasets_empty_edge_one_hour() {
    for datasets in [None, Some("*")] {
        let mut args = vec!["--secret", SECRET, "--tenant", "t1", "--user", "u1"];
        if let Some(datasets) = datasets {
            args.extend(["--datasets", datasets]);
        }
        let claims = verified_claims(&token(&args));
        assert_eq!(claims["permisos"], json!(["*"]), "--datasets {datasets:?}");
        assert_eq!(claims["edge_id"], "");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    }
}

#[test]
fn jti_is_fresh_per_token_unless_given() {
    let args = ["--secret", SECRET, "--tenant", "t1", "--user", "u1"];
    let first = verified_claims(&token(&args));
    let second = verified_claims(&token(&args));
    assert_ne!(first["jti"], second["jti"]);
    let fixed = verified_claims(&token(&["--secret", SECRET, "--tenant", "t1", "--user", "u1", "--jti", "sess-42"]));
    assert_eq!(fixed["jti"], "sess-42");
}

#[test]
fn negative_ttl_makes_a_token_pyjwt_rejects_as_expired() {
    let token = token(&["--secret", SECRET, "--tenant", "t1", "--user", "u1", "--ttl", "-10"]);
    assert_eq!(pyjwt(&token, SECRET), json!({"error": "ExpiredSignatureError"}));
}

#[test]
fn wrong_secret_is_refused_by_pyjwt() {
    let token = token(&["--secret", SECRET, "--tenant", "t1", "--user", "u1"]);
    assert_eq!(pyjwt(&token, "another-secret-of-reasonable-len"), json!({"error": "InvalidSignatureError"}));
}

#[test]
fn connector_credential_has_connector_role_and_one_year_lifetime() {
    let token = token(&["--connector", "--secret", SECRET, "--tenant", "abc-123"]);
    let claims = verified_claims(&token);
    assert_eq!(claim_names(&claims), ["cuenta_id", "exp", "iat", "jti", "role"]);
    assert_eq!(claims["cuenta_id"], "abc-123");
    assert_eq!(claims["role"], "connector");
    assert_random_jti(&claims);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 365 * 24 * 3600);

    let short = verified_claims(&self::token(&["--connector", "--secret", SECRET, "--tenant", "t", "--ttl", "60"]));
    assert_eq!(short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(), 60);
}

#[test]
fn connector_credential_and_session_token_do_not_cross_in_our_verifier() {
    use volley_protocol::token::{verify_connector, verify_session, Validation};
    let validation =
        Validation { secrets: &[SECRET.as_bytes()], now: now(), leeway_seconds: 30, token_bytes_max: 4096 };
    let connector = token(&["--connector", "--secret", SECRET, "--tenant", "t1"]);
    let session = token(&["--secret", SECRET, "--tenant", "t1", "--user", "u1"]);
    assert!(verify_connector(&connector, &validation).is_ok());
    assert!(verify_session(&session, &validation).is_ok());
    assert!(verify_session(&connector, &validation).is_err());
    assert!(verify_connector(&session, &validation).is_err());
}

#[test]
fn session_flags_are_refused_with_connector() {
    for extra in [["--user", "u1"], ["--datasets", "a"], ["--edge", "e"]] {
        let mut args = vec!["token", "--connector", "--secret", SECRET, "--tenant", "t1"];
        args.extend(extra);
        let output = volley(&args);
        assert!(!output.status.success(), "{args:?} should be refused");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn secret_comes_from_volley_secret_env() {
    let output = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["token", "--tenant", "t1", "--user", "u1"])
        .env("VOLLEY_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let claims = verified_claims(&stdout_token(&output));
    assert_eq!(claims["sub"], "u1");
}

#[test]
fn missing_or_empty_secret_is_refused() {
    let missing = volley(&["token", "--tenant", "t1", "--user", "u1"]);
    let empty_flag = volley(&["token", "--secret", "", "--tenant", "t1", "--user", "u1"]);
    let empty_env = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["token", "--tenant", "t1", "--user", "u1"])
        .env("VOLLEY_SECRET", "")
        .output()
        .unwrap();
    for output in [missing, empty_flag, empty_env] {
        assert!(!output.status.success());
        assert!(output.stdout.is_empty(), "nothing on stdout when refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("secret"), "the error names the secret: {stderr}");
    }
}

#[test]
fn empty_tenant_user_or_dataset_is_refused() {
    for args in [
        ["--tenant", "", "--user", "u1", "--datasets", "a"],
        ["--tenant", "t1", "--user", "", "--datasets", "a"],
        ["--tenant", "t1", "--user", "u1", "--datasets", "a,,b"],
    ] {
        let mut full = vec!["token", "--secret", SECRET];
        full.extend(args);
        let output = volley(&full);
        assert!(!output.status.success(), "{full:?} should be refused");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn every_subcommand_help_says_what_it_does() {
    let cases: [(&[&str], &str); 6] = [
        (&["--help"], "Arrow"),
        (&["demo", "--help"], "demo"),
        (&["gateway", "--help"], "gateway"),
        (&["connector", "--help"], "dials out"),
        (&["token", "--help"], "session token"),
        (&["bench", "--help"], "load-test"),
    ];
    for (args, purpose) in cases {
        let output = volley(args);
        assert!(output.status.success(), "volley {args:?} exits 0");
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains(purpose), "`volley {}` mentions {purpose:?}:\n{help}", args.join(" "));
    }
    let top = String::from_utf8(volley(&["--help"]).stdout).unwrap();
    for name in ["demo", "gateway", "connector", "token", "bench"] {
        assert!(top.contains(name), "top-level help lists {name}");
    }
}
