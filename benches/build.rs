//! The parity bench compares against ISA-L (Debian's libisal-dev).
fn main() {
    println!("cargo:rustc-link-lib=isal");
}
