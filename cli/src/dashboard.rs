//! Where the built dashboard (`web/dist`, written by `npm run build` in
//! `web/`) is, for `volley gateway` without `static_dir` and for `volley
//! demo`. The binary does not embed it (that would make every cargo build
//! need npm); it looks for it beside the checkout it belongs to.

use std::path::{Path, PathBuf};

/// The file that marks a built dashboard.
pub const INDEX_FILE: &str = "index.html";

/// Where a built dashboard may be, most specific first:
///
/// 1. `web/dist` of the checkout holding the executable: a binary in
///    `<checkout>/target/<profile>/` looks in `<checkout>/web/dist`, whatever
///    the working directory;
/// 2. `web/dist` of the checkout the binary was built from, for a
///    `CARGO_TARGET_DIR` outside the checkout;
/// 3. `web/dist` in the working directory.
pub fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::with_capacity(3);
    if let Ok(executable) = std::env::current_exe() {
        // <checkout>/target/<profile>/volley → <checkout>
        if let Some(checkout) = executable.ancestors().nth(3) {
            dirs.push(checkout.join("web/dist"));
        }
    }
    // <checkout>/cli → <checkout>
    if let Some(checkout) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        let dist = checkout.join("web/dist");
        if !dirs.contains(&dist) {
            dirs.push(dist);
        }
    }
    dirs.push(PathBuf::from("web/dist"));
    dirs
}

/// The first of [`candidates`] that holds a built dashboard.
pub fn find() -> Option<PathBuf> {
    candidates().into_iter().find(|dir| dir.join(INDEX_FILE).is_file())
}
