//! The `crm` binary; everything lives in the library so tests can reach it.

/// mimalloc instead of the system allocator: see BENCHMARKS.md ("Profile of
/// a page of 50 contacts").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    crm_server::main()
}
