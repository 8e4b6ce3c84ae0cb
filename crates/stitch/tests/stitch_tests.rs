//! Integration and property tests of `mtseg-stitch`, one test binary.
//!
//! Run with `cargo test -p mtseg-stitch`. Proptest case counts are kept small so the whole suite
//! runs in seconds; raise them with `PROPTEST_CASES=256 cargo test -p mtseg-stitch`.

mod stitch_tests {
    pub(crate) mod first_row;
    pub(crate) mod identity_crop;
    pub(crate) mod order;
    pub(crate) mod probability_store;
    pub(crate) mod reference;
    pub(crate) mod resumed_store;
    pub(crate) mod strategies;
    pub(crate) mod synthetic;
    pub(crate) mod threaded;
}
