//! Fjord's benchmark programs (see `docs/benchmarks.md`).
