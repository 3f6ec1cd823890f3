mod cli;

use clap::Parser;
use cli::train::Interrupted;
use gliznet::error::is_input_error;
use std::process::ExitCode;

/// Notes whether standard output was closed when the process started (`gliznet … >&-`).
/// The Rust runtime reopens a closed standard descriptor on /dev/null before `main`, after
/// which it cannot be told from a deliberate `>/dev/null`; this runs earlier, among the ELF
/// initialisers, like the `ctor` crate's constructors.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod stdout_at_start {
    extern "C" fn check() {
        // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags; it fails (EBADF) when
        // descriptor 1 is not open.
        if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
            crate::cli::output::STDOUT_CLOSED_AT_START
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static CHECK: extern "C" fn() = check;
}

fn main() -> ExitCode {
    gliznet::tune_malloc();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => ExitCode::from(130),
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_input_error(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A reader that closed our standard output (`gliznet … | head`) is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
