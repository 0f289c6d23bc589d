//! The `kafka-transit` binary: the command line is `kafka_transit::cli`.

/// See host/Cargo.toml: large record buffers are reused instead of faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kafka_transit::cli::main()
}
