//! Cohorts: reruns skip complete slides, outputs of another config stop the run naming the key,
//! two processes over one manifest share its slides (each slide done exactly once), two CPU
//! workers give the outputs of one, `status` reads where every slide stands, and a run killed
//! with SIGKILL in the middle of a slide resumes from its checkpoint with the same outputs.
//! All with the cheap TorchScript test model on copies of hgsc_nest.jpg.

use mtseg_test_models::{cheap_model, repo_root as root};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// `n` copies of hgsc_nest.jpg named `s0.jpg`.. in `dir/slides`, and a manifest listing them.
fn slides(dir: &Path, n: usize) -> PathBuf {
    let sd = dir.join("slides");
    std::fs::create_dir_all(&sd).unwrap();
    let mut list = String::new();
    for i in 0..n {
        std::fs::copy(
            root().join("data/hgsc_nest.jpg"),
            sd.join(format!("s{i}.jpg")),
        )
        .unwrap();
        list.push_str(&format!("s{i}.jpg\n"));
    }
    let manifest = sd.join("manifest.txt");
    std::fs::write(&manifest, list).unwrap();
    manifest
}

/// A config over `manifest` with the cheap model; `extra` is appended (more tables).
fn config(dir: &Path, name: &str, manifest: &Path, io: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[model]\narchitecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\n\
         weights = {:?}\nnuclei_classes = [\"Background\", \"Dark\", \"Pale\", \"Large\"]\n\
         device = \"cpu\"\nbatch_size = 8\n\
         [io]\npatch_input = 256\npatch_output = 164\nstride = 164\nmargin = 128\n\
         resolution = {{ mpp = 0.5 }}\n{io}\n\
         [input]\nmanifest = {:?}\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\nformats = [\"annotationstore\", \"qupath\"]\n{extra}",
        cheap_model().display().to_string(),
        manifest.display().to_string(),
        dir.join("out").display().to_string(),
    );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn command(config: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"));
    c.arg("--config")
        .arg(config)
        .args(["--progress", "json"])
        .args(extra)
        .current_dir(root());
    c
}

fn run(config: &Path, extra: &[&str]) -> Output {
    command(config, extra).output().unwrap()
}

/// The progress events (JSON lines on stderr).
fn events(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Paths of the slides with an event of this kind.
fn with_event(events: &[serde_json::Value], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn geojson_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".geojson"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_rerun_skips_complete_slides_and_another_config_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = slides(tmp.path(), 3);
    let cfg = config(tmp.path(), "run.toml", &manifest, "", "");
    let first = run(&cfg, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(with_event(&events(&first), "slide_finished").len(), 3);
    let out = tmp.path().join("out");
    let before = geojson_bytes(&out);
    assert_eq!(before.len(), 3);

    let t = Instant::now();
    let second = run(&cfg, &[]);
    let wall = t.elapsed().as_secs_f64();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let ev = events(&second);
    assert!(
        with_event(&ev, "slide_started").is_empty(),
        "nothing processed again"
    );
    let skipped: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["event"] == "slide_skipped")
        .collect();
    assert_eq!(skipped.len(), 3);
    for s in &skipped {
        assert_eq!(s["reason"], "complete");
        assert!(s["seconds"].as_f64().unwrap() < 0.5, "{s}");
    }
    eprintln!(
        "rerun over 3 complete slides: {wall:.2} s in all, {:?} s per slide deciding",
        skipped
            .iter()
            .map(|s| s["seconds"].as_f64().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(geojson_bytes(&out), before, "outputs untouched");

    // another result key: refused before any work, naming it
    let other = config(tmp.path(), "other.toml", &manifest, "tile_shape = 1024", "");
    let refused = run(&other, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("io.tile_shape") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(geojson_bytes(&out), before, "outputs untouched");

    // a speed setting is not a result key: still complete
    let faster = config(
        tmp.path(),
        "fast.toml",
        &manifest,
        "",
        "[pipeline]\nthreads = 1\n",
    );
    let o = run(&faster, &[]);
    assert!(o.status.success());
    assert_eq!(with_event(&events(&o), "slide_skipped").len(), 3);

    // a deleted output makes its slide run again, and only that one
    std::fs::remove_file(out.join("s1.geojson")).unwrap();
    let o = run(&cfg, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o);
    assert_eq!(with_event(&ev, "slide_finished").len(), 1);
    assert!(with_event(&ev, "slide_finished")[0].ends_with("s1.jpg"));
    assert_eq!(geojson_bytes(&out), before);
}

#[test]
fn two_concurrent_runs_over_one_manifest_do_each_slide_once() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = slides(tmp.path(), 8);
    let cfg = config(tmp.path(), "run.toml", &manifest, "", "");
    let t = Instant::now();
    let a = command(&cfg, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = command(&cfg, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    eprintln!(
        "two concurrent runs over 8 slides: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (ea, eb) = (events(&a), events(&b));
    let mut done: Vec<String> = with_event(&ea, "slide_finished");
    done.extend(with_event(&eb, "slide_finished"));
    let mut started = with_event(&ea, "slide_started");
    started.extend(with_event(&eb, "slide_started"));
    done.sort();
    started.sort();
    let mut unique = done.clone();
    unique.dedup();
    assert_eq!(done.len(), 8, "every slide done: {done:?}");
    assert_eq!(unique.len(), 8, "no slide done twice: {done:?}");
    assert_eq!(started, done, "no slide started twice");
    eprintln!(
        "process A did {}, B did {}",
        with_event(&ea, "slide_finished").len(),
        with_event(&eb, "slide_finished").len()
    );
    assert_eq!(geojson_bytes(&tmp.path().join("out")).len(), 8);
}

#[test]
fn two_cpu_workers_write_what_one_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = slides(tmp.path(), 6);
    let mut outputs = Vec::new();
    for workers in [1, 2] {
        let dir = tmp.path().join(format!("w{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = config(
            &dir,
            "run.toml",
            &manifest,
            "",
            &format!("[pipeline]\nworkers = {workers}\n"),
        );
        let t = Instant::now();
        let o = run(&cfg, &[]);
        eprintln!(
            "{workers} CPU worker(s), 6 slides: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(with_event(&events(&o), "slide_finished").len(), 6);
        outputs.push(geojson_bytes(&dir.join("out")));
    }
    assert_eq!(outputs[0].len(), 6);
    assert_eq!(
        outputs[0], outputs[1],
        "identical GeoJSON with 1 and 2 workers"
    );
}

#[test]
fn status_reads_done_failed_and_pending_from_the_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = slides(tmp.path(), 2);
    std::fs::write(tmp.path().join("slides/corrupt.jpg"), b"not a jpeg at all").unwrap();
    std::fs::write(&manifest, "s0.jpg\ncorrupt.jpg\ns1.jpg\n").unwrap();
    let cfg = config(tmp.path(), "run.toml", &manifest, "", "");
    let status = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"));
        c.args(["status", "--config"]).arg(&cfg);
        if json {
            c.arg("--json");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let before: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(before["counts"]["pending"], 3, "{before}");

    let o = run(&cfg, &[]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(after["counts"]["done"], 2, "{after}");
    assert_eq!(after["counts"]["failed"], 1, "{after}");
    let corrupt = &after["slides"][1];
    assert_eq!(corrupt["state"], "failed");
    assert!(
        corrupt["slide"].as_str().unwrap().ends_with("corrupt.jpg")
            && corrupt["error"].as_str().unwrap().contains("corrupt.jpg"),
        "{corrupt}"
    );
    assert_eq!(after["slides"][0]["state"], "done");
    let table = status(false);
    assert!(
        table.contains("FAILED") && table.contains("2 done, 1 failed"),
        "{table}"
    );
}

/// Reads the run's progress events as they come and kills it (SIGKILL) once `fraction` of its
/// post-processing tiles are done; returns the tiles done at the kill.
fn kill_at(mut child: std::process::Child, fraction: f64) -> u64 {
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
            continue;
        };
        if e["event"] == "tiles_done" {
            let (done, total) = (e["done"].as_u64().unwrap(), e["total"].as_u64().unwrap());
            if done as f64 >= fraction * total as f64 {
                child.kill().unwrap();
                child.wait().unwrap();
                return done;
            }
        }
    }
    panic!("the run ended before {fraction} of its tiles were done");
}

#[test]
fn a_run_killed_in_the_middle_of_a_slide_resumes_with_the_same_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = slides(tmp.path(), 1);
    // small post-processing tiles: many band boundaries to checkpoint at
    let io = "tile_shape = 400";
    let reference = tmp.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let cfg_ref = config(
        &reference,
        "run.toml",
        &manifest,
        io,
        "[pipeline]\ncheckpoint_every_s = 0\n",
    );
    let o = run(&cfg_ref, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole = geojson_bytes(&reference.join("out"));

    let killed = tmp.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    let cfg = config(
        &killed,
        "run.toml",
        &manifest,
        io,
        "[pipeline]\ncheckpoint_every_s = 0\n",
    );
    let child = command(&cfg, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tiles_at_kill = kill_at(child, 0.6);
    assert!(
        geojson_bytes(&killed.join("out")).is_empty(),
        "nothing final after the kill"
    );
    let o = run(&cfg, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = events(&o);
    let finished = ev.iter().find(|e| e["event"] == "slide_finished").unwrap();
    let resumed_row = finished["resumed_at_row"].as_u64();
    eprintln!(
        "killed after {tiles_at_kill} tiles; the rerun resumed at canvas row {resumed_row:?}, ran {} patches",
        finished["patches"]
    );
    assert!(resumed_row.is_some_and(|r| r > 0), "{finished}");
    assert_eq!(
        geojson_bytes(&killed.join("out")),
        whole,
        "byte-identical GeoJSON"
    );
    assert!(
        !killed.join("out/.mtseg/s0.checkpoint").exists(),
        "the checkpoint is removed once the slide is done"
    );

    // a checkpoint made with another result key is ignored, with a message naming the key
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let first = config(
        &other,
        "run.toml",
        &manifest,
        io,
        "[pipeline]\ncheckpoint_every_s = 0\n",
    );
    let child = command(&first, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kill_at(child, 0.6);
    let second = config(
        &other,
        "run2.toml",
        &manifest,
        "tile_shape = 500",
        "[pipeline]\ncheckpoint_every_s = 0\n",
    );
    let o = run(&second, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("ignoring the checkpoint") && stderr.contains("io.tile_shape"),
        "{stderr}"
    );
    let finished = events(&o)
        .into_iter()
        .find(|e| e["event"] == "slide_finished")
        .unwrap();
    assert!(finished["resumed_at_row"].is_null(), "{finished}");
}
