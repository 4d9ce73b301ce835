//! PROTOCOL.md's refusal tables and the engine's `RefusalKind` say the same
//! thing, both ways: every kind's (error code, HTTP status) is a row of the
//! §10 table and every (error code, close code) a row of the register
//! refusal table in §4.1, and every row of those tables is a kind. The error
//! codes themselves are checked against §8, and the close codes against §9,
//! by `protocol/tests/spec_examples.rs`.

use std::collections::BTreeSet;

use volley_engine::{Answer, RefusalKind};
use volley_testkit::markdown::table_after;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The (answer, code) pairs of a table whose first two columns are a number
/// and a backticked error code; `answer` makes the number an [`Answer`].
fn documented(heading_prefix: &str, answer: fn(u16) -> Answer) -> BTreeSet<(Answer, String)> {
    let markdown = protocol_md();
    let rows = table_after(&markdown, heading_prefix);
    let mut pairs = BTreeSet::new();
    for row in &rows {
        let number: u16 =
            row[0].parse().unwrap_or_else(|e| panic!("{heading_prefix}: {:?} is not a number: {e}", row[0]));
        let code = row[1].trim_matches('`').to_owned();
        assert!(pairs.insert((answer(number), code.clone())), "{heading_prefix} lists {number} {code} twice");
    }
    pairs
}

/// The (answer, code) pairs the engine's kinds produce, of one answer kind.
fn in_engine(keep: fn(Answer) -> bool) -> BTreeSet<(Answer, String)> {
    let mut pairs = BTreeSet::new();
    for kind in RefusalKind::ALL {
        let (code, answer) = kind.parts();
        if keep(answer) {
            let pair = (answer, code.as_str().to_owned());
            assert!(
                pairs.insert(pair.clone()),
                "two refusal kinds answer {pair:?}; the table could not tell them apart"
            );
        }
    }
    pairs
}

fn assert_same(what: &str, documented: &BTreeSet<(Answer, String)>, engine: &BTreeSet<(Answer, String)>) {
    let only_documented: Vec<_> = documented.difference(engine).collect();
    let only_in_engine: Vec<_> = engine.difference(documented).collect();
    assert!(
        only_documented.is_empty() && only_in_engine.is_empty(),
        "{what} and RefusalKind differ: only in PROTOCOL.md {only_documented:?}, only in the engine {only_in_engine:?}"
    );
}

#[test]
fn http_refusals_match_the_http_table() {
    let documented = documented("## 10.", Answer::Http);
    let engine = in_engine(|answer| matches!(answer, Answer::Http(_)));
    assert_same("§10's status table", &documented, &engine);
}

#[test]
fn register_refusals_match_the_register_table() {
    let documented = documented("### 4.1", Answer::Close);
    let engine = in_engine(|answer| matches!(answer, Answer::Close(_)));
    assert_same("§4.1's register refusal table", &documented, &engine);
}
