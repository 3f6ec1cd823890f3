use clap::Parser;
use gliznet::cli::train::Interrupted;
use gliznet::error::is_input_error;
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_malloc();
    let cli = gliznet::cli::Cli::parse();
    match gliznet::cli::run(cli) {
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

/// candle allocates a fresh buffer for every tensor op; glibc's default thresholds hand large
/// ones back to the kernel each time (mmap/munmap, page faults). Keeping them in the heap is
/// measurably faster (see BENCHMARKS.md).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
