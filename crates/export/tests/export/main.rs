//! Integration tests of mtseg-export: one binary, modules by concern.
//!
//! `round_trip`: every format written and read back (rusqlite + zlib WKB, serde_json, zarrs).
//! `error_paths`: failures name their file and leave no half-written output or temporary.
//! Python-side checks (TIAToolbox's `SQLiteStore`, shapely validity, zarr-python) are in
//! `tools/check_outputs.py`, run on the output of `cargo run -p mtseg-export --example
//! export_sample`.

mod error_paths;
mod round_trip;
mod support;
