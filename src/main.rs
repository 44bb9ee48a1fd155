//! The binary: every role is in the library (src/lib.rs).

fn main() {
    overlay_init::main()
}
