//! Rebuild when a migration changes: the SQL files are compiled into the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
