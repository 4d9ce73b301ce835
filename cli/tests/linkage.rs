//! What the `volley` binary needs from the machine it runs on: the default
//! build links no shared library beyond the C runtime, and compiles no ODBC
//! code, so that `cargo run --release -- demo` works on a machine without
//! unixODBC (docs/decisions/2026-12-07-odbc-behind-a-cargo-feature.md).
//!
//! The test reads the binary cargo built for this test run, which in CI is
//! the debug one, not the release one. The `NEEDED` entries do not depend on
//! the profile: they are the native libraries that the crates in the build
//! ask the linker for (`#[link]`, build scripts) and that the code
//! references, and optimisation level, LTO, codegen units and debug info
//! change neither which crates are built nor which libraries they request.
//! LTO can only drop references, never add a library. Building a release
//! binary only to read its dynamic section would add over ten minutes to CI.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

/// Shared libraries of the C runtime, by the start of their file names.
const C_RUNTIME: [&str; 7] = ["libc.so", "libm.so", "libgcc_s.so", "libdl.so", "libpthread.so", "librt.so", "ld-linux"];

/// The unixODBC driver manager: linked only by builds with `--features odbc`.
const ODBC_DRIVER_MANAGER: &str = "libodbc.so.2";

/// The `NEEDED` entries of an ELF file's dynamic section, read with `readelf -d`.
fn needed_libraries(binary: &Path) -> Vec<String> {
    let output = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf runs (apt install binutils; scripts/test.sh installs it)");
    assert!(output.status.success(), "readelf -d {}: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    // `0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]`
    text.lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| Some(line.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect()
}

#[test]
fn the_volley_binary_links_only_the_c_runtime() {
    let binary = Path::new(env!("CARGO_BIN_EXE_volley"));
    let needed = needed_libraries(binary);
    assert!(needed.iter().any(|l| l.starts_with("libc.so")), "readelf output not understood: {needed:?}");
    let odbc_built = cfg!(feature = "odbc");
    let unexpected: Vec<&String> = needed
        .iter()
        .filter(|lib| !C_RUNTIME.iter().any(|prefix| lib.starts_with(prefix)))
        .filter(|lib| !(odbc_built && lib.as_str() == ODBC_DRIVER_MANAGER))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} needs {unexpected:?} beyond the C runtime (all NEEDED: {needed:?}); a machine without them cannot run it \
         and the default build must not need them (ODBC belongs behind `--features odbc`)",
        binary.display()
    );
    if !odbc_built {
        assert!(!needed.iter().any(|l| l.starts_with("libodbc")), "{needed:?}");
    }
}

/// The default feature set of the `volley` package resolves no `odbc-sys`,
/// so nothing asks the linker for `-lodbc` and the build succeeds on a
/// machine without unixodbc-dev (a NEEDED entry alone would not show this:
/// the linker drops unused libraries but still fails on missing ones).
#[test]
fn the_default_build_compiles_no_odbc_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-p", "volley", "-e", "normal,build", "--prefix", "none"])
        .current_dir(&root)
        .output()
        .expect("cargo tree runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("volley-connector ")), "cargo tree output not understood:\n{stdout}");
    let odbc: Vec<&str> = stdout.lines().filter(|l| l.starts_with("odbc-") || l.starts_with("arrow-odbc ")).collect();
    assert!(odbc.is_empty(), "the default build compiles {odbc:?}, which link libodbc");
}
