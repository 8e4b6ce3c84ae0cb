//! Output file names, as TIAToolbox names them: `<stem>.db` for a single task and
//! `<stem>_<task>.db` per task for multi-task models (HoVer-Net+), likewise `.geojson`; one
//! `<stem>.zarr` per slide for all tasks.

use std::path::PathBuf;

use mtseg_export::{Format, Task};
use mtseg_io_config::{Architecture, HeadKind, OutputFormat, RunConfig, SlideInput};

/// The tasks a model produces, in TIAToolbox's order.
pub(crate) fn tasks(arch: &Architecture) -> Vec<Task> {
    match arch {
        Architecture::HoVerNetPlus { .. } => vec![Task::Nuclei, Task::Layers],
        Architecture::TorchScript { .. } if arch.has_head(HeadKind::Ls) => {
            vec![Task::Nuclei, Task::Layers]
        }
        _ => vec![Task::Nuclei],
    }
}

/// The export crate's format for a configured one.
pub(crate) fn export_format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::AnnotationStore => Format::AnnotationStore,
        OutputFormat::QuPath => Format::QuPath,
        OutputFormat::Zarr => Format::Zarr,
    }
}

/// Every output of `slide` as the export crate takes them, `(task, format, final path)`, in
/// format order: one file per task for `.db` and GeoJSON (`<stem>.<ext>` for a single task,
/// `<stem>_<task>.<ext>` for several), one `<stem>.zarr` store for all tasks (listed once per
/// task). The stem is the slide's ([`SlideInput::stem`]: its manifest's, else its file stem).
pub(crate) fn output_files(cfg: &RunConfig, slide: &SlideInput) -> Vec<(Task, Format, PathBuf)> {
    let stem = slide.stem();
    let tasks = tasks(&cfg.model.architecture);
    let dir = &cfg.output.dir;
    let mut out = Vec::new();
    for &format in &cfg.output.formats {
        let ext = match format {
            OutputFormat::AnnotationStore => "db",
            OutputFormat::QuPath if cfg.output.gzip_geojson => "geojson.gz",
            OutputFormat::QuPath => "geojson",
            OutputFormat::Zarr => "zarr",
        };
        for &t in &tasks {
            let name = if tasks.len() == 1 || format == OutputFormat::Zarr {
                format!("{stem}.{ext}")
            } else {
                format!("{stem}_{}.{ext}", t.name())
            };
            out.push((t, export_format(format), dir.join(name)));
        }
    }
    out
}

/// Every file or directory a run writes for `slide`, each once, in format order (the overlay
/// picture last, when asked for).
pub(crate) fn output_paths(cfg: &RunConfig, slide: &SlideInput) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for (_, _, p) in output_files(cfg, slide) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if cfg.output.overlay {
        out.push(overlay_path(cfg, slide));
    }
    out
}

/// The overlay picture of a slide (`[output] overlay = true`).
pub(crate) fn overlay_path(cfg: &RunConfig, slide: &SlideInput) -> PathBuf {
    cfg.output.dir.join(format!("{}_overlay.png", slide.stem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra: &str) -> RunConfig {
        RunConfig::from_toml(
            &format!("{extra}\n[input]\nslides = [\"a/b/slide-1.svs\"]\n"),
            Path::new("c.toml"),
        )
        .unwrap()
    }

    #[test]
    fn single_task_names_follow_tiatoolbox() {
        let c = cfg(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[output]\ndir = \"out\"\nformats = [\"annotationstore\", \"qupath\", \"zarr\"]",
        );
        let p = output_paths(&c, &SlideInput::new("a/b/slide-1.svs"));
        assert_eq!(
            p,
            vec![
                PathBuf::from("out/slide-1.db"),
                PathBuf::from("out/slide-1.geojson"),
                PathBuf::from("out/slide-1.zarr")
            ]
        );
    }

    #[test]
    fn a_manifest_stem_names_every_output() {
        let c = cfg(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[output]\ndir = \"out\"\nformats = [\"annotationstore\", \"zarr\"]\noverlay = true",
        );
        let slide = SlideInput {
            stem: Some("patient-7".into()),
            ..SlideInput::new("scans/slide.svs")
        };
        assert_eq!(
            output_paths(&c, &slide),
            vec![
                PathBuf::from("out/patient-7.db"),
                PathBuf::from("out/patient-7.zarr"),
                PathBuf::from("out/patient-7_overlay.png"),
            ]
        );
    }

    #[test]
    fn multi_task_names_carry_the_task() {
        let c = cfg(
            "[model]\npreset = \"hovernetplus-oed\"\n[output]\ndir = \"o\"\nformats = [\"annotationstore\"]",
        );
        let p = output_paths(&c, &SlideInput::new("x.tif"));
        assert_eq!(
            p,
            vec![
                PathBuf::from("o/x_nuclei_segmentation.db"),
                PathBuf::from("o/x_layer_segmentation.db")
            ]
        );
        let c = cfg(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[output]\nformats = [\"qupath\"]\ngzip_geojson = true",
        );
        assert_eq!(
            output_paths(&c, &SlideInput::new("s.svs")),
            vec![PathBuf::from("results/s.geojson.gz")]
        );
    }

    #[test]
    fn a_zarr_store_holds_every_task() {
        let c = cfg(
            "[model]\npreset = \"hovernetplus-oed\"\n[output]\ndir = \"o\"\nformats = [\"qupath\", \"zarr\"]\noverlay = true",
        );
        let f = output_files(&c, &SlideInput::new("x.tif"));
        assert_eq!(
            f,
            vec![
                (
                    Task::Nuclei,
                    Format::QuPath,
                    PathBuf::from("o/x_nuclei_segmentation.geojson")
                ),
                (
                    Task::Layers,
                    Format::QuPath,
                    PathBuf::from("o/x_layer_segmentation.geojson")
                ),
                (Task::Nuclei, Format::Zarr, PathBuf::from("o/x.zarr")),
                (Task::Layers, Format::Zarr, PathBuf::from("o/x.zarr")),
            ]
        );
        assert_eq!(
            output_paths(&c, &SlideInput::new("x.tif")),
            vec![
                PathBuf::from("o/x_nuclei_segmentation.geojson"),
                PathBuf::from("o/x_layer_segmentation.geojson"),
                PathBuf::from("o/x.zarr"),
                PathBuf::from("o/x_overlay.png"),
            ]
        );
    }
}
