//! The dashboard's static files, read once at start and served from memory.
//!
//! [`StaticFiles::load`] walks `static_dir` on the thread that runs
//! [`crate::start`], before any worker runs, and keeps each file's whole
//! HTTP response (head and body) as `Bytes`. A worker answering `/`,
//! `/latency` or `/app.js` clones one of those `Bytes`: no file system call,
//! no formatting, so a slow or hung disk (NFS, an overlay under pressure)
//! never stalls a worker's connections. The price: a change to the files
//! on disk needs a gateway restart.
//!
//! What is loaded: regular files under `static_dir`, whose names are UTF-8
//! normal path components. A symbolic link is loaded only when it points to
//! a regular file inside `static_dir`; a link out of it, or to a directory,
//! is skipped (so the walk cannot loop). Each file is at most
//! [`STATIC_FILE_BYTES_MAX`]; the whole set at most [`STATIC_SET_BYTES_MAX`]
//! (ARCHITECTURE.md "Worst-case memory"). The walk goes breadth first in
//! name order, so `index.html` and `latency.html` at the top are loaded
//! before any asset.

// The request path is peer input (ARCHITECTURE.md invariant 6): no indexing
// or slicing that a peer-chosen offset could make panic.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use volley_protocol::handshake::{http_error, http_response};

/// Largest static file loaded, bytes; a larger one is skipped (and its path
/// answers 404).
pub const STATIC_FILE_BYTES_MAX: u64 = 16 << 20;

/// Most bytes the static set holds in memory (responses, heads included).
/// Files that would take it past this are skipped, with one WARN at start
/// naming how many. The built dashboard is about 3 MiB.
pub const STATIC_SET_BYTES_MAX: u64 = 64 << 20;

// A file that fits the per-file cap can always fit an empty set.
const _: () = assert!(STATIC_FILE_BYTES_MAX < STATIC_SET_BYTES_MAX);

/// Deepest directory level walked below `static_dir`.
const STATIC_DIR_DEPTH_MAX: usize = 16;

/// Shown at `/` when `static_dir` has no `index.html`.
const NOT_BUILT: &str = "<!doctype html><title>Volley</title><p>The dashboard is not built. Run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>.</p>";

/// The static files, as ready-made HTTP responses keyed by their path
/// below `static_dir` (`index.html`, `assets/app.js`).
pub struct StaticFiles {
    responses: HashMap<Box<str>, Bytes>,
    not_built: Bytes,
    not_found: Bytes,
    bytes: u64,
}

/// What a load skipped, for its warnings (and the tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Files that would have taken the set past its budget.
    pub over_budget: usize,
    /// Files over [`STATIC_FILE_BYTES_MAX`].
    pub over_file_max: usize,
    /// Symbolic links that point out of `static_dir`, to a directory, or nowhere.
    pub links: usize,
    /// Files that could not be read, names that are not UTF-8, special files,
    /// directories deeper than the walk goes.
    pub other: usize,
}

impl StaticFiles {
    /// Loads `root` within [`STATIC_SET_BYTES_MAX`], logging what it skipped.
    pub fn load(root: &Path) -> StaticFiles {
        let (files, skipped) = StaticFiles::load_with_budget(root, STATIC_SET_BYTES_MAX);
        if let Some(warning) = budget_warning(&skipped, STATIC_SET_BYTES_MAX) {
            log::warn!("static_dir {}: {warning}", root.display());
        }
        if skipped.over_file_max + skipped.links + skipped.other > 0 {
            log::warn!(
                "static_dir {}: skipped {} file(s) over {STATIC_FILE_BYTES_MAX} bytes, {} symbolic link(s) \
                 out of it or to a directory, {} other entries (unreadable, special, or nested too deep)",
                root.display(),
                skipped.over_file_max,
                skipped.links,
                skipped.other
            );
        }
        if files.responses.is_empty() {
            log::info!("static_dir {}: no files; `/` shows a notice that the dashboard is not built", root.display());
        } else {
            log::info!(
                "static_dir {}: {} files ({} bytes) read; changes on disk need a restart",
                root.display(),
                files.responses.len(),
                files.bytes
            );
        }
        files
    }

    /// Loads `root` holding at most `budget` bytes of responses. A missing
    /// or unreadable `root` gives an empty set.
    pub fn load_with_budget(root: &Path, budget: u64) -> (StaticFiles, Skipped) {
        let mut files = StaticFiles {
            responses: HashMap::new(),
            not_built: Bytes::from(http_response(200, "text/html; charset=utf-8", NOT_BUILT.as_bytes(), &[])),
            not_found: Bytes::from(http_error(404, "not_found", "no such file")),
            bytes: 0,
        };
        let mut skipped = Skipped::default();
        // Symbolic links are followed only to files below the canonical root.
        let Ok(canonical_root) = root.canonicalize() else {
            return (files, skipped);
        };
        let mut queue: VecDeque<(PathBuf, Vec<String>)> = VecDeque::from([(canonical_root.clone(), Vec::new())]);
        while let Some((dir, names)) = queue.pop_front() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                skipped.other += 1;
                continue;
            };
            let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
            entries.sort_by_key(|entry| entry.file_name());
            for entry in entries {
                let Some(name) = entry.file_name().to_str().filter(|name| is_plain_name(name)).map(str::to_owned)
                else {
                    skipped.other += 1;
                    continue;
                };
                let Ok(kind) = entry.file_type() else {
                    skipped.other += 1;
                    continue;
                };
                let mut key = names.clone();
                key.push(name);
                if kind.is_dir() {
                    if key.len() > STATIC_DIR_DEPTH_MAX {
                        skipped.other += 1;
                    } else {
                        queue.push_back((entry.path(), key));
                    }
                    continue;
                }
                let target = if kind.is_symlink() {
                    match entry.path().canonicalize() {
                        Ok(target) if target.starts_with(&canonical_root) && target.is_file() => target,
                        _ => {
                            skipped.links += 1;
                            continue;
                        }
                    }
                } else if kind.is_file() {
                    entry.path()
                } else {
                    skipped.other += 1;
                    continue;
                };
                let key = key.join("/");
                let body = match read_capped(&target) {
                    Ok(Some(body)) => body,
                    Ok(None) => {
                        skipped.over_file_max += 1;
                        continue;
                    }
                    Err(e) => {
                        log::debug!("static_dir: {}: {e}", target.display());
                        skipped.other += 1;
                        continue;
                    }
                };
                let response = http_response(200, content_type(&key), &body, &[]);
                let size = u64::try_from(response.len()).unwrap_or(u64::MAX);
                if files.bytes.saturating_add(size) > budget {
                    skipped.over_budget += 1;
                    continue;
                }
                files.bytes += size;
                files.responses.insert(key.into_boxed_str(), Bytes::from(response));
            }
        }
        (files, skipped)
    }

    /// The response to `GET path`: `/` is `index.html` (or the notice that
    /// the dashboard is not built), `/latency` is `latency.html`, any other
    /// path names a file; a path with `..`, a backslash or anything but
    /// plain names, or one naming no loaded file, is a 404.
    pub fn response(&self, path: &str) -> Bytes {
        let relative = match path {
            "/" | "" => "index.html",
            "/latency" => "latency.html",
            other => other.trim_start_matches('/'),
        };
        let found = key_of(relative).and_then(|key| self.responses.get(key.as_str()));
        match (found, path) {
            (Some(response), _) => response.clone(),
            (None, "/" | "") => self.not_built.clone(),
            (None, _) => self.not_found.clone(),
        }
    }

    /// The loaded paths, sorted.
    #[cfg(test)]
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.responses.keys().map(AsRef::as_ref).collect();
        names.sort_unstable();
        names
    }
}

/// The one WARN a load over its budget logs: how many files it skipped, and the budget.
pub fn budget_warning(skipped: &Skipped, budget: u64) -> Option<String> {
    (skipped.over_budget > 0).then(|| {
        format!(
            "{} file(s) skipped: the static set is held in memory within {budget} bytes \
             (STATIC_SET_BYTES_MAX) and they did not fit",
            skipped.over_budget
        )
    })
}

/// A request's relative path as a key of the set: its normal components
/// joined by `/` (so `a//b` and `a/./b` are `a/b`, as the file system would
/// have them); `None` for `..`, a leading `.`, a root, or a backslash.
fn key_of(relative: &str) -> Option<String> {
    if relative.contains('\\') {
        return None;
    }
    let mut parts = Vec::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// A directory entry's name the set may hold: no backslash (a request with
/// one is refused, so such a file could never be asked for).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\\') && name != "." && name != ".."
}

/// Reads a regular file of at most [`STATIC_FILE_BYTES_MAX`] bytes
/// (`Ok(None)` when it is larger). Opened without following a link and
/// without blocking on a FIFO, in case the entry changed since it was listed.
fn read_capped(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > STATIC_FILE_BYTES_MAX {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte past the cap tells a file that grew since its metadata.
    File::take(file, STATIC_FILE_BYTES_MAX + 1).read_to_end(&mut body)?;
    if u64::try_from(body.len()).unwrap_or(u64::MAX) > STATIC_FILE_BYTES_MAX {
        return Ok(None);
    }
    Ok(Some(body))
}

/// The `Content-Type` of a file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "map" => "application/json",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("volley-static-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn body_of(response: &Bytes) -> &[u8] {
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        response.get(at..).expect("a body")
    }

    #[test]
    fn files_past_the_budget_are_skipped_and_warned_about() {
        let dir = scratch("budget");
        std::fs::write(dir.join("a.txt"), vec![b'a'; 100]).expect("a");
        std::fs::write(dir.join("b.txt"), vec![b'b'; 10_000]).expect("b");
        std::fs::write(dir.join("c.txt"), vec![b'c'; 100]).expect("c");
        let (all, skipped) = StaticFiles::load_with_budget(&dir, u64::MAX);
        assert_eq!(all.names(), ["a.txt", "b.txt", "c.txt"]);
        assert_eq!(skipped, Skipped::default());
        assert_eq!(budget_warning(&skipped, u64::MAX), None);
        let size = |path: &str| u64::try_from(all.response(path).len()).expect("size");
        let budget = size("/a.txt") + size("/c.txt");

        let (files, skipped) = StaticFiles::load_with_budget(&dir, budget);
        assert_eq!(files.names(), ["a.txt", "c.txt"], "b.txt does not fit beside a.txt; c.txt still does");
        assert_eq!(files.bytes, budget);
        assert_eq!(skipped.over_budget, 1);
        let warning = budget_warning(&skipped, budget).expect("a warning");
        assert!(warning.starts_with("1 file(s) skipped"), "{warning}");
        assert!(warning.contains(&budget.to_string()), "the warning names the budget: {warning}");
        assert_eq!(files.response("/b.txt"), files.not_found);
        assert_eq!(body_of(&files.response("/c.txt")), vec![b'c'; 100].as_slice());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_budget_constant_is_the_default() {
        let dir = scratch("default");
        std::fs::write(dir.join("index.html"), "<p>hi").expect("index");
        let files = StaticFiles::load(&dir);
        assert_eq!(files.names(), ["index.html"]);
        assert_eq!(body_of(&files.response("/")), b"<p>hi");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nothing_outside_the_root_is_loaded_or_served() {
        let outside = scratch("outside");
        std::fs::write(outside.join("secret.txt"), "secret").expect("secret");
        let root = outside.join("dist");
        std::fs::create_dir_all(root.join("sub/deeper")).expect("dirs");
        std::fs::write(root.join("index.html"), "<p>index").expect("index");
        std::fs::write(root.join("sub/app.js"), "js").expect("js");
        std::fs::write(root.join("sub/deeper/x.css"), "css").expect("css");
        std::os::unix::fs::symlink("index.html", root.join("in-link.html")).expect("link in");
        std::os::unix::fs::symlink("../secret.txt", root.join("out-link")).expect("link out");
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("abs-link")).expect("absolute link");
        std::os::unix::fs::symlink("..", root.join("out-dir")).expect("dir link");
        std::os::unix::fs::symlink("sub", root.join("in-dir")).expect("dir link inside");
        std::os::unix::fs::symlink("missing", root.join("dangling")).expect("dangling");
        std::fs::write(root.join("back\\slash"), "bs").expect("backslash name");

        let (files, skipped) = StaticFiles::load_with_budget(&root, u64::MAX);
        assert_eq!(files.names(), ["in-link.html", "index.html", "sub/app.js", "sub/deeper/x.css"]);
        assert_eq!(skipped.links, 5, "out-link, abs-link, out-dir, in-dir, dangling: {skipped:?}");
        assert_eq!(skipped.other, 1, "the name with a backslash: {skipped:?}");

        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/a/../../secret.txt",
            "/sub/../../secret.txt",
            "/sub/../index.html",
            "/./index.html",
            "/..\\secret.txt",
            "/out-link",
            "/abs-link",
            "/out-dir/secret.txt",
            "/out-dir/dist/index.html",
            "/in-dir/app.js",
            "/dangling",
            "/sub",
            "/sub/",
            "//",
            &format!("/{}", outside.join("secret.txt").display()),
        ] {
            assert_eq!(files.response(path), files.not_found, "{path}");
        }
        assert_eq!(body_of(&files.response("/")), b"<p>index");
        assert_eq!(body_of(&files.response("/in-link.html")), b"<p>index");
        assert_eq!(body_of(&files.response("/sub/app.js")), b"js");
        assert_eq!(body_of(&files.response("//sub//./app.js")), b"js");
        assert!(files.response("/sub/app.js").starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript"));
        assert!(files.response("/sub/deeper/x.css").starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/css"));
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn a_file_over_the_per_file_max_is_skipped() {
        let dir = scratch("file-max");
        std::fs::write(dir.join("index.html"), "<p>index").expect("index");
        let big = File::create(dir.join("big.bin")).expect("big");
        big.set_len(STATIC_FILE_BYTES_MAX + 1).expect("sparse file");
        let (files, skipped) = StaticFiles::load_with_budget(&dir, u64::MAX);
        assert_eq!(files.names(), ["index.html"]);
        assert_eq!(skipped.over_file_max, 1);
        assert_eq!(files.response("/big.bin"), files.not_found);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_index_html_the_root_says_the_dashboard_is_not_built() {
        let dir = scratch("empty");
        std::fs::write(dir.join("latency.html"), "<p>latency").expect("latency");
        let (files, _) = StaticFiles::load_with_budget(&dir, u64::MAX);
        assert!(files.response("/").starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/html"));
        assert_eq!(body_of(&files.response("/")), NOT_BUILT.as_bytes());
        assert_eq!(body_of(&files.response("/latency")), b"<p>latency");
        assert_eq!(files.response("/index.html"), files.not_found);
        let (missing, _) = StaticFiles::load_with_budget(&dir.join("nowhere"), u64::MAX);
        assert!(missing.names().is_empty());
        assert_eq!(body_of(&missing.response("/")), NOT_BUILT.as_bytes());
        assert_eq!(missing.response("/latency"), missing.not_found);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
