//! gliznet: zero-shot text classification. A text and any set of label names are packed into
//! one encoder sequence, `[CLS] text [SEP] label_1 [SEP] label_2 [SEP] …`, and every label is
//! scored in a single pass.

pub mod batch;
pub mod classifier;
pub mod config;
pub mod data;
pub mod device;
pub mod embed;
pub mod error;
pub mod eval;
pub mod files;
pub mod generate;
pub mod label_cache;
pub mod mining;
pub mod model;
pub mod results;
pub mod rng;
pub mod scoring;
pub mod serve;
/// Fixtures for tests (tiny models, fixture paths); not in the shipped library. The integration
/// tests get it through the `test-support` feature (a dev-dependency of this crate on itself).
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tokenizer;
pub mod train;

/// candle allocates a fresh buffer for every tensor op; glibc's default thresholds hand large
/// ones back to the kernel each time (mmap/munmap, page faults). Keeping them in the heap is
/// measurably faster (see BENCHMARKS.md). Call it first thing in `main`, before any thread
/// exists.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
