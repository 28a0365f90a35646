//! The built-in IMS simulator: a faithful stand-in for IMS over real HTTP (axum), used by the
//! demo, the end-to-end tests and the benchmarks.
