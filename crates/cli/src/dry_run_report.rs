//! Prints the `--dry-run` plan of every slide.

use mtseg_io_config::{RunConfig, Shard};
use mtseg_pipeline::{PostprocPlan, SlidePlan, cpu_threads, plan_slide, torch_threads};

use crate::exit_codes::Exit;

/// Plans the slides of `cfg` this process would run (`slides`, indices of `shard`), prints the
/// plans, and returns the exit code.
pub(crate) fn run(cfg: &RunConfig, shard: Option<Shard>, slides: &[usize]) -> Exit {
    let io = &cfg.io;
    println!(
        "config {}: {} ({}), {} -> {} px patches, stride {}, at {}",
        cfg.path.display(),
        cfg.model.preset.as_deref().unwrap_or("custom model"),
        cfg.model.architecture.name(),
        io.patch_input,
        io.patch_output,
        io.stride,
        io.resolution
    );
    println!(
        "threads: {} for reading, post-processing and writing; libtorch {} on a CPU (OpenMP wait policy {})",
        cpu_threads(cfg),
        torch_threads(cfg),
        crate::openmp_wait::current_policy()
    );
    if let Some(shard) = shard {
        println!(
            "shard {shard}: {} of the {} slides (slide k belongs to shard k mod {})",
            slides.len(),
            cfg.input.slides.len(),
            shard.count()
        );
    }
    let mut failed = 0;
    let mut existing = 0;
    for slide in slides.iter().map(|&i| &cfg.input.slides[i]) {
        match plan_slide(cfg, slide) {
            Ok(plan) => {
                print_plan(&plan, cfg);
                existing += plan.outputs.iter().filter(|o| o.exists).count();
            }
            Err(e) => {
                failed += 1;
                println!("slide {}\n  FAILED: {e}", slide.path.display());
            }
        }
    }
    let n = slides.len();
    println!(
        "{} of {n} slides can be processed; nothing was run or written (dry run)",
        n - failed
    );
    if existing > 0 && !cfg.output.overwrite {
        println!(
            "note: {existing} output(s) already exist; a run skips the slides they complete (same config, weights and version), and stops before any work on others unless overwrite = true"
        );
    }
    if failed > 0 {
        Exit::SlidesFailed
    } else {
        Exit::Ok
    }
}

fn print_plan(p: &SlidePlan, cfg: &RunConfig) {
    println!("slide {}", p.path.display());
    let mpp = p
        .mpp
        .map_or("unknown".to_string(), |m| format!("{:.4}", m[0]));
    let power = p
        .objective_power
        .map_or("unknown".to_string(), |v| format!("{v}x"));
    println!(
        "  format: {}, {} x {} px at level 0, {mpp} mpp, objective {power}",
        p.format, p.level0.0, p.level0.1
    );
    println!(
        "  at {}: {} x {} px",
        cfg.io.resolution, p.processing.0, p.processing.1
    );
    println!("  tissue mask: {}", p.mask);
    println!(
        "  patches: {} in the grid, {} after the tissue mask",
        p.patches_total, p.patches_selected
    );
    let (cw, ch, ox, oy) = p.canvas;
    println!("  stitched canvas: {cw} x {ch} px at ({ox}, {oy})");
    match p.postproc {
        PostprocPlan::FullCanvas => println!(
            "  post-processing: whole canvas at once (fits in tile_shape {})",
            cfg.io.tile_shape
        ),
        PostprocPlan::Tiles {
            tile,
            full,
            strips,
            crosses,
        } => println!(
            "  post-processing: {} tiles of {tile} px + {strips} seam strips + {crosses} cross sections (margin {})",
            full, cfg.io.margin
        ),
    }
    for o in &p.outputs {
        let note = if o.exists {
            if cfg.output.overwrite {
                " (exists, would be replaced)"
            } else {
                " (EXISTS: a run would refuse; set overwrite = true)"
            }
        } else {
            ""
        };
        println!("  would write {}{note}", o.path.display());
    }
}
