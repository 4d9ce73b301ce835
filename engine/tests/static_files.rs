//! The dashboard's static files are read once at start and served from
//! memory: a worker never reads the disk for them, so a
//! slow or vanished `static_dir` cannot stall its connections, and nothing
//! outside `static_dir` is ever served.

use std::path::{Path, PathBuf};

use volley_testkit::engine::{config, start};
use volley_testkit::http::{http_body, http_get};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-static-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn gateway_on(static_dir: &Path) -> volley_engine::Gateway {
    start(volley_engine::GatewayConfig { static_dir: Some(static_dir.to_path_buf()), ..config() })
}

/// The `Content-Type` header of a response text.
fn content_type(response: &str) -> &str {
    response.lines().find_map(|line| line.strip_prefix("Content-Type: ")).unwrap_or("")
}

/// Every static path answers from memory: once served, the same path still
/// answers 200 with the same bytes after `static_dir` is renamed away and
/// deleted (the old per-request `std::fs::read` answered 404, and `/` the
/// "not built" notice).
#[test]
fn files_are_served_from_memory_after_the_directory_is_gone() {
    let base = scratch("gone");
    let dist = base.join("dist");
    std::fs::create_dir_all(dist.join("assets")).expect("dist");
    std::fs::write(dist.join("index.html"), "<!doctype html><p>the index</p>").expect("index");
    std::fs::write(dist.join("latency.html"), "<!doctype html><p>latency</p>").expect("latency");
    std::fs::write(dist.join("assets/app.js"), "console.log('app');").expect("app.js");
    std::fs::write(dist.join("style.css"), "body { color: red }").expect("style");
    let gateway = gateway_on(&dist);
    let addr = gateway.local_addr();

    let paths = ["/", "/latency", "/index.html", "/assets/app.js", "/style.css"];
    let before: Vec<(u16, String)> = paths.iter().map(|path| http_get(addr, path)).collect();
    for (path, (status, response)) in paths.iter().zip(&before) {
        assert_eq!(*status, 200, "{path}: {response}");
    }
    assert_eq!(http_body(&before[0].1), "<!doctype html><p>the index</p>");
    assert_eq!(http_body(&before[1].1), "<!doctype html><p>latency</p>");
    assert_eq!(http_body(&before[3].1), "console.log('app');");
    assert_eq!(content_type(&before[0].1), "text/html; charset=utf-8");
    assert_eq!(content_type(&before[3].1), "text/javascript; charset=utf-8");
    assert_eq!(content_type(&before[4].1), "text/css; charset=utf-8");

    std::fs::rename(&dist, base.join("moved")).expect("rename static_dir");
    for (path, (status, response)) in paths.iter().zip(&before) {
        let (status_after, response_after) = http_get(addr, path);
        assert_eq!((status_after, &response_after), (*status, response), "{path} after the rename");
    }
    std::fs::remove_dir_all(&base).expect("delete static_dir");
    for (path, (status, response)) in paths.iter().zip(&before) {
        let (status_after, response_after) = http_get(addr, path);
        assert_eq!((status_after, &response_after), (*status, response), "{path} after the delete");
    }
    // A file added after start is not served: the set is read once.
    std::fs::create_dir_all(&dist).expect("dist again");
    std::fs::write(dist.join("new.js"), "late").expect("new file");
    assert_eq!(http_get(addr, "/new.js").0, 404);
    drop(gateway);
    let _ = std::fs::remove_dir_all(&base);
}

/// Traversal attempts and symbolic links out of `static_dir` answer 404 and
/// never carry a byte of the files outside it. The old code followed links
/// (`std::fs::metadata` and `read` on the joined path), so `/out-link` and
/// `/out-dir/secret.txt` served the secret.
#[test]
fn nothing_outside_static_dir_is_served() {
    let outside = scratch("outside");
    let secret = "TOP-SECRET-OUTSIDE-STATIC-DIR";
    std::fs::write(outside.join("secret.txt"), secret).expect("secret");
    std::fs::write(outside.join("Cargo.toml"), secret).expect("Cargo.toml");
    let dist = outside.join("dist");
    std::fs::create_dir_all(dist.join("a")).expect("dist");
    std::fs::write(dist.join("index.html"), "<p>index</p>").expect("index");
    std::os::unix::fs::symlink("../secret.txt", dist.join("out-link")).expect("link out");
    std::os::unix::fs::symlink(outside.join("secret.txt"), dist.join("abs-link")).expect("absolute link out");
    std::os::unix::fs::symlink("..", dist.join("out-dir")).expect("directory link out");
    let gateway = gateway_on(&dist);
    let addr = gateway.local_addr();

    assert_eq!(http_get(addr, "/").0, 200);
    let absolute = format!("/{}", outside.join("secret.txt").display());
    for path in [
        "/../Cargo.toml",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e/Cargo.toml",
        "/a/../../etc/passwd",
        "/a/../../secret.txt",
        "/..\\secret.txt",
        "/a\\..\\..\\secret.txt",
        absolute.as_str(),
        "/out-link",
        "/abs-link",
        "/out-dir/secret.txt",
        "/out-dir/Cargo.toml",
    ] {
        let (status, response) = http_get(addr, path);
        assert_eq!(status, 404, "{path}: {response}");
        assert!(!response.contains(secret), "{path} leaked a file outside static_dir: {response}");
    }
    drop(gateway);
    let _ = std::fs::remove_dir_all(&outside);
}
