//! The `crm` binary; everything lives in the library so tests can reach it.

fn main() -> std::process::ExitCode {
    crm_server::main()
}
