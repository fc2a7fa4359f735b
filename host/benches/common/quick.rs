//! Whether a benchmark runs for its figures or only to show it still works.

/// `cargo bench` passes `--bench`; `cargo test --bench '*'` (run by scripts/test.sh, so that a benchmark broken by a
/// change fails the suite instead of waiting for someone to measure) does not: then a benchmark does each of its
/// parts once, on the smallest input that exercises it. A benchmark binary run by hand needs `--bench` too, or it
/// reports quick-run figures.
pub fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}
