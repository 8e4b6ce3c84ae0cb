//! Output file names, as TIAToolbox names them: `<stem>.db` for a single task and
//! `<stem>_<task>.db` per task for multi-task models (HoVer-Net+), likewise `.geojson`; one
//! `<stem>.zarr` per slide for all tasks.

use std::path::{Path, PathBuf};

use mtseg_io_config::{Architecture, OutputFormat, RunConfig};

/// The tasks a model produces, in TIAToolbox's order.
pub fn tasks(arch: &Architecture) -> Vec<&'static str> {
    match arch {
        Architecture::HoVerNetPlus { .. } => vec!["nuclei_segmentation", "layer_segmentation"],
        Architecture::TorchScript { .. } if arch.has_head(mtseg_io_config::HeadKind::Ls) => {
            vec!["nuclei_segmentation", "layer_segmentation"]
        }
        _ => vec!["nuclei_segmentation"],
    }
}

/// The file stem of a slide (its file name without the last extension).
pub fn slide_stem(slide: &Path) -> String {
    slide
        .file_stem()
        .map_or_else(|| "slide".to_string(), |s| s.to_string_lossy().into_owned())
}

/// Every file or directory a run writes for `slide`, in format order.
pub fn output_paths(cfg: &RunConfig, slide: &Path) -> Vec<PathBuf> {
    let stem = slide_stem(slide);
    let tasks = tasks(&cfg.model.architecture);
    let mut out = Vec::new();
    for format in &cfg.output.formats {
        let ext = match format {
            OutputFormat::AnnotationStore => "db",
            OutputFormat::QuPath if cfg.output.gzip_geojson => "geojson.gz",
            OutputFormat::QuPath => "geojson",
            OutputFormat::Zarr => {
                out.push(cfg.output.dir.join(format!("{stem}.zarr")));
                continue;
            }
        };
        if tasks.len() == 1 {
            out.push(cfg.output.dir.join(format!("{stem}.{ext}")));
        } else {
            for t in &tasks {
                out.push(cfg.output.dir.join(format!("{stem}_{t}.{ext}")));
            }
        }
    }
    if cfg.output.overlay {
        out.push(overlay_path(cfg, slide));
    }
    out
}

/// The overlay picture of a slide (`[output] overlay = true`).
pub fn overlay_path(cfg: &RunConfig, slide: &Path) -> PathBuf {
    cfg.output
        .dir
        .join(format!("{}_overlay.png", slide_stem(slide)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = output_paths(&c, Path::new("a/b/slide-1.svs"));
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
    fn multi_task_names_carry_the_task() {
        let c = cfg(
            "[model]\npreset = \"hovernetplus-oed\"\n[output]\ndir = \"o\"\nformats = [\"annotationstore\"]",
        );
        let p = output_paths(&c, Path::new("x.tif"));
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
            output_paths(&c, Path::new("s.svs")),
            vec![PathBuf::from("results/s.geojson.gz")]
        );
    }
}
