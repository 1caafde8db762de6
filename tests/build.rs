//! Builds the hostile components in `hostile-guests/` for the tests.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = manifest.join("hostile-guests");
    wasmraid_guest_build::rerun_if_changed(&guests);
    wasmraid_guest_build::rerun_if_changed(&manifest.join("../guest-algorithms/sdk"));
    let dir = out.join("hostile");
    if let Err(e) = wasmraid_guest_build::build_workspace(&guests, &out.join("guest-target"), &dir) {
        panic!("{e}");
    }
    println!("cargo:rustc-env=WASMRAID_HOSTILE_DIR={}", dir.display());
}
