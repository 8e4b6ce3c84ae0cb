//! `mtseg-pipeline status`: where every slide of a config stands, read from its output
//! directory alone (the library's `cohort_status`), as a table or as JSON.

use mtseg_io_config::RunConfig;
use mtseg_pipeline::{CohortStatus, SlideState, cohort_status};

use crate::exit_codes::Exit;

/// Prints the status of every slide of `cfg` (all shards); JSON on stdout with `json`.
pub(crate) fn run(cfg: &RunConfig, json: bool) -> Exit {
    let status = cohort_status(cfg);
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the status as JSON: {e}");
                return Exit::Internal;
            }
        }
    } else {
        print_table(&status);
    }
    Exit::Ok
}

fn print_table(status: &CohortStatus) {
    for s in &status.slides {
        let (state, detail) = match &s.state {
            SlideState::Done { nuclei, stale, .. } => (
                "done",
                match stale {
                    Some(key) => format!("{nuclei} nuclei (made with another `{key}`)"),
                    None => format!("{nuclei} nuclei"),
                },
            ),
            SlideState::Failed { error } => ("FAILED", error.clone()),
            SlideState::InProgress => ("in progress", String::new()),
            SlideState::Pending => ("pending", String::new()),
        };
        println!("{:<12} {}  {detail}", state, s.slide.display());
    }
    let c = status.counts;
    println!(
        "{} slide(s): {} done, {} failed, {} in progress, {} pending",
        status.slides.len(),
        c.done,
        c.failed,
        c.in_progress,
        c.pending
    );
}
