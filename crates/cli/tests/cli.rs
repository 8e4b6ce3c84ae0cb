//! The `mtseg-pipeline` binary as a user runs it: help, exit codes, config errors, dry runs.
//! Runs from the repository root (the shipped configs' relative paths point there); needs the test
//! data of `scripts/setup`.

use mtseg_test_models::repo_root as root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    assert!(
        root().join("data/cmu_small_region.svs").exists(),
        "test data missing: run scripts/setup first"
    );
    Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("run.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn help_documents_flags_and_exit_codes() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let (out, _) = text(&o);
    for needle in [
        "--config <FILE>",
        "--dry-run",
        "Exit codes:",
        "2  usage or config error",
        "3  finished, but one or more slides failed",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--config <FILE>"));
    let o = run(&["--config", "configs/hovernet.toml", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_errors_exit_2_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstrde = 100\n[input]\nslides = [\"x.svs\"]\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    assert!(err.contains(&format!("{}:4:1", cfg.display())), "{err}");
    assert!(err.contains("did you mean `stride`?"), "{err}");

    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstride = 300\n[input]\nslides = [\"x.svs\"]\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("larger than the output patch"));

    let o = run(&["--config", "/nonexistent/run.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("cannot read config file /nonexistent/run.toml")
    );
}

#[test]
fn dry_run_of_the_shipped_config() {
    let o = run(&["--config", "configs/hovernet.toml", "--dry-run"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    for needle in [
        "slide data/cmu_small_region.svs",
        "at 0.25 mpp: 4431 x 5922 px",
        "patches: 1036 in the grid",
        "after the tissue mask",
        "post-processing: 35 tiles of 984 px + 58 seam strips + 24 cross sections",
        "would write results/cmu_small_region.db",
        "would write results/cmu_small_region.geojson",
        "nothing was run or written",
    ] {
        assert!(out.contains(needle), "dry run lacks {needle:?}:\n{out}");
    }
}

/// libtorch gets every CPU thread, and the binary restarts itself with
/// `OMP_WAIT_POLICY=PASSIVE` unless the user set the variable.
#[test]
fn libtorch_gets_every_thread_and_waits_passively() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"data/hgsc_nest.jpg\"]\nmpp = 0.5\n\
         [pipeline]\nthreads = 3\n",
    );
    let dry_run = |policy: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"));
        cmd.args(["--config", cfg.to_str().unwrap(), "--dry-run"])
            .current_dir(root())
            .env_remove("OMP_WAIT_POLICY");
        if let Some(p) = policy {
            cmd.env("OMP_WAIT_POLICY", p);
        }
        let o = cmd.output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
        out
    };
    let out = dry_run(None);
    assert!(
        out.contains("threads: 3 for reading, post-processing and writing; libtorch 3 on a CPU (OpenMP wait policy PASSIVE)"),
        "{out}"
    );
    let out = dry_run(Some("ACTIVE"));
    assert!(out.contains("(OpenMP wait policy ACTIVE)"), "{out}");
}

#[test]
fn dry_run_lists_a_bad_slide_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.svs");
    std::fs::write(&bad, "not a slide\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[model]\npreset = \"hovernetplus-oed\"\n[input]\nslides = [\"{}\", \"data/cmu_small_region.svs\", \"{}\"]\n[output]\ndir = \"{}\"\nformats = [\"annotationstore\", \"zarr\"]\n",
            dir.path().join("missing.svs").display(),
            bad.display(),
            dir.path().join("out").display()
        ),
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("missing.svs\n  FAILED: cannot open slide"),
        "{out}"
    );
    assert!(out.contains("broken.svs\n  FAILED: slide"), "{out}");
    assert!(out.contains("not a format mtseg can read"), "{out}");
    assert!(out.contains("at 0.5 mpp: 2216 x 2961 px"), "{out}");
    assert!(
        out.contains("cmu_small_region_nuclei_segmentation.db"),
        "{out}"
    );
    assert!(
        out.contains("cmu_small_region_layer_segmentation.db"),
        "{out}"
    );
    assert!(out.contains("cmu_small_region.zarr"), "{out}");
    assert!(out.contains("1 of 3 slides can be processed"), "{out}");
    assert!(
        !dir.path().join("out").exists(),
        "a dry run must write nothing"
    );
}

#[test]
fn plain_image_needs_an_mpp_and_patch_mode_checks_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"data/hgsc_nest.jpg\"]\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).0.contains("give [input] mpp"), "{}", text(&o).0);

    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"data/hgsc_nest.jpg\"]\nmpp = 0.5\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("at 0.25 mpp: 3000 x 3000 px"), "{out}");

    let cfg = write_config(
        dir.path(),
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nmode = \"patch\"\nslides = [\"data/hgsc_nest.jpg\"]\nmpp = 0.25\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o)
            .0
            .contains("patch mode needs images of exactly 256 x 256"),
        "{}",
        text(&o).0
    );
}

#[test]
fn dry_run_applies_each_csv_manifest_row() {
    let dir = tempfile::tempdir().unwrap();
    let nest = root().join("data/hgsc_nest.jpg");
    let cmu = root().join("data/cmu_small_region.svs");
    // Row 2 gives the plain image its mpp, no mask and a stem; row 3 lists it again without an
    // mpp (so it cannot be planned); row 4 uses [input]'s values.
    std::fs::write(
        dir.path().join("cohort.csv"),
        format!(
            "slide,mpp,mask,stem\n\"{}\",0.5,none,nest-a\n\"{}\",,,nest-b\n\"{}\",,,\n",
            nest.display(),
            nest.display(),
            cmu.display()
        ),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nmanifest = \"{}\"\n[output]\ndir = \"{}\"\nformats = [\"annotationstore\"]\n",
            dir.path().join("cohort.csv").display(),
            dir.path().join("out").display()
        ),
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--dry-run"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    let plans: Vec<&str> = out.split("\nslide ").skip(1).collect();
    assert_eq!(plans.len(), 3, "{out}");
    assert!(plans[0].contains("at 0.25 mpp: 3000 x 3000 px"), "{out}");
    assert!(plans[0].contains("tissue mask: none\n"), "{out}");
    assert!(plans[0].contains("out/nest-a.db"), "{out}");
    assert!(plans[1].contains("FAILED"), "{out}");
    assert!(plans[1].contains("give [input] mpp"), "{out}");
    assert!(plans[2].contains("tissue mask: auto (Otsu"), "{out}");
    assert!(plans[2].contains("out/cmu_small_region.db"), "{out}");
    assert!(out.contains("2 of 3 slides can be processed"), "{out}");
}
