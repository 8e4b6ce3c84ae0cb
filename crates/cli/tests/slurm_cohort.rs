//! A cohort run as users run it on a cluster: a manifest, `sbatch --array`, one
//! `mtseg-pipeline --config` per array task, resubmission of the same array, on a real
//! single-node Slurm (slurmctld + slurmd + munged) that `scripts/slurm/local-cluster` starts
//! under a temporary directory and always stops again.
//!
//! Needs root and Debian's slurm-wlm and munge (`scripts/setup` installs them), the cheap
//! TorchScript test model and `data/hgsc_nest.jpg` (also `scripts/setup`). When Slurm is missing or
//! does not start, the test fails with the daemons' logs: it never skips.
//!
//! Steps:
//! 1. the cluster runs an array task: 3 tasks run the binary (`--version`) and see their
//!    `SLURM_ARRAY_TASK_*` variables;
//! 2. a manifest of 7 slides (6 copies of `data/hgsc_nest.jpg`, 1 corrupt file) over
//!    `--array=0-2`: each task takes its shard from the Slurm variables, so every slide is
//!    processed exactly once; `mtseg-pipeline status --json` then says 6 done, 1 failed (with
//!    its error);
//! 3. the same array again: the 6 done slides are skipped (`slide_skipped`, reason `complete`),
//!    the corrupt one fails again, nothing is processed twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mtseg_test_models::{cheap_model, repo_root as root};
use serde_json::Value;

/// Array tasks per submission.
const TASKS: usize = 3;
/// Good slides in the manifest (copies of `data/hgsc_nest.jpg`).
const GOOD: usize = 6;
/// The corrupt slide's file name.
const CORRUPT: &str = "corrupt.tif";
/// The states of a job that has ended (squeue's `%T`).
const ENDED: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
];
/// The longest a submission may take before the test gives up (the cheap model needs seconds
/// per slide; this only bounds a hung cluster).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn local_cluster() -> PathBuf {
    root().join("scripts/slurm/local-cluster")
}

fn text(o: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Where the test records the cluster it starts, so that a later run can stop the daemons of a
/// run that was killed before its guard could (`<cluster dir>\n<test pid>`).
fn cluster_record() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("slurm_cohort.cluster")
}

/// Stops the cluster of an earlier run of this test that was killed (its process is gone but its
/// daemons may still run), and removes its directory.
fn stop_leftover_cluster() {
    let Ok(record) = std::fs::read_to_string(cluster_record()) else {
        return;
    };
    let mut lines = record.lines();
    let (Some(dir), Some(pid)) = (lines.next(), lines.next()) else {
        return;
    };
    if Path::new("/proc").join(pid).exists() {
        return; // that run is still going (another `cargo test` on this target dir)
    }
    let dir = PathBuf::from(dir);
    if dir.join("slurm.conf").exists() {
        eprintln!(
            "stopping the cluster a killed earlier run left in {}",
            dir.display()
        );
        let o = Command::new(local_cluster())
            .arg("stop")
            .arg(&dir)
            .output()
            .unwrap();
        eprintln!("{}", text(&o));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_file(cluster_record());
}

/// A running single-node cluster; dropping it stops every daemon (also when the test panics).
struct Cluster {
    dir: Option<tempfile::TempDir>,
    conf: PathBuf,
    start_s: f64,
}

impl Cluster {
    /// Starts the cluster or panics with the script's output (which holds the daemons' logs).
    fn start() -> Cluster {
        stop_leftover_cluster();
        // A short path under /tmp: munged's and slurmd's unix sockets live in it.
        let dir = tempfile::Builder::new()
            .prefix("mtseg-slurm-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::write(
            cluster_record(),
            format!("{}\n{}\n", dir.path().display(), std::process::id()),
        )
        .unwrap();
        // From here on the guard stops whatever `start` managed to start.
        let mut cluster = Cluster {
            conf: dir.path().join("slurm.conf"),
            dir: Some(dir),
            start_s: 0.0,
        };
        let t = Instant::now();
        let o = Command::new(local_cluster())
            .arg("start")
            .arg(cluster.dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", local_cluster().display()));
        cluster.start_s = t.elapsed().as_secs_f64();
        assert!(
            o.status.success(),
            "the local Slurm cluster did not start (scripts/setup installs slurm-wlm and munge; \
             the test needs root)\n{}",
            text(&o)
        );
        let export = format!("export SLURM_CONF={}", cluster.conf.display());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&export),
            "start did not print {export:?}\n{}",
            text(&o)
        );
        cluster
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// A Slurm client command talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// The daemons' logs, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["slurmctld.log", "slurmd.log", "munged.log"] {
            let p = self.dir().join("log").join(name);
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s += &format!(
                "--- {} (last 40 lines) ---\n{}\n",
                p.display(),
                tail.join("\n")
            );
        }
        let q = self.command("squeue").args(["-t", "all"]).output();
        if let Ok(q) = q {
            s += &format!(
                "--- squeue -t all ---\n{}",
                String::from_utf8_lossy(&q.stdout)
            );
        }
        s
    }

    /// Submits `script` as an array of [`TASKS`] tasks and waits until every task has ended
    /// (polling squeue: `sbatch --wait` polls at up to 10 s intervals). Each task records its
    /// own exit code; the tasks' Slurm states are not checked here. Returns the wall time of the
    /// submission.
    fn run_array(&self, script: &Path, work: &Path, name: &str) -> f64 {
        // Slurm opens --output before the script runs and does not create its directory
        std::fs::create_dir_all(work.join("logs")).unwrap();
        let t = Instant::now();
        let o = self
            .command("sbatch")
            .arg("--parsable")
            .arg(format!("--array=0-{}", TASKS - 1))
            .arg(format!("--job-name={name}"))
            .arg("--chdir")
            .arg(work)
            .arg(format!("--output={}/logs/{name}_%A_%a.out", work.display()))
            // a task that hangs is killed by Slurm (minutes) rather than by the test's timeout
            .arg("--time=15")
            .arg(script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run sbatch: {e}"));
        let stdout = String::from_utf8_lossy(&o.stdout);
        // --parsable prints "<job id>" or "<job id>;<cluster>"
        let id = stdout.trim().split(';').next().unwrap_or("").to_string();
        assert!(
            o.status.success() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            "{name}: sbatch did not submit\n{}\n{}",
            text(&o),
            self.logs()
        );
        loop {
            let q = self
                .command("squeue")
                .args(["-h", "-j", &id, "-t", "all", "-o", "%T"])
                .output()
                .unwrap();
            assert!(
                q.status.success(),
                "{name}: squeue failed\n{}\n{}",
                text(&q),
                self.logs()
            );
            let states = String::from_utf8_lossy(&q.stdout).into_owned();
            // finished jobs stay listed for MinJobAge (300 s) in their final state
            if !states.trim().is_empty() && states.lines().all(|s| ENDED.contains(&s.trim())) {
                break;
            }
            assert!(
                t.elapsed() < SUBMIT_TIMEOUT,
                "{name}: array job {id} not finished after {SUBMIT_TIMEOUT:?}:\n{states}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed().as_secs_f64()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let o = Command::new(local_cluster())
            .arg("stop")
            .arg(dir.path())
            .output();
        match o {
            Ok(o) if o.status.success() => {
                let _ = std::fs::remove_file(cluster_record());
            }
            Ok(o) => {
                // keep the directory (and the record) for the next run and for a look
                eprintln!("stopping the cluster failed:\n{}", text(&o));
                let _ = dir.keep();
            }
            Err(e) => {
                eprintln!("cannot run {}: {e}", local_cluster().display());
                let _ = dir.keep();
            }
        }
    }
}

/// An array job script in `work`: `body` runs once per task with `$t` = the task id.
fn job_script(work: &Path, name: &str, body: &str) -> PathBuf {
    let p = work.join(format!("{name}.sh"));
    std::fs::write(
        &p,
        format!("#!/bin/bash\nset -u\nt=$SLURM_ARRAY_TASK_ID\n{body}\n"),
    )
    .unwrap();
    p
}

/// The slides: [`GOOD`] copies of `data/hgsc_nest.jpg` and one file of random bytes behind a TIFF
/// header; the manifest lists them relative to its own directory.
fn make_cohort(work: &Path) -> (PathBuf, Vec<String>) {
    let source = root().join("data/hgsc_nest.jpg");
    assert!(
        source.exists(),
        "{} missing: run scripts/setup first",
        source.display()
    );
    let slides = work.join("slides");
    std::fs::create_dir_all(&slides).unwrap();
    let mut names: Vec<String> = (0..GOOD).map(|i| format!("nest_{i}.jpg")).collect();
    for n in &names {
        std::fs::copy(&source, slides.join(n)).unwrap();
    }
    // "II*\0", a first-IFD offset far past the end, then bytes from a fixed LCG
    let mut bytes = vec![0x49, 0x49, 0x2a, 0x00, 0xff, 0xff, 0xff, 0x7f];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..4096 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        bytes.push((x >> 56) as u8);
    }
    std::fs::write(slides.join(CORRUPT), bytes).unwrap();
    names.push(CORRUPT.to_string());
    let manifest = work.join("manifest.txt");
    let list: String = names.iter().map(|n| format!("slides/{n}\n")).collect();
    std::fs::write(&manifest, format!("# the test cohort\n{list}")).unwrap();
    (manifest, names)
}

/// The run config of the cohort: the cheap model on CPU, one thread per task (each task has one
/// CPU from Slurm), AnnotationStore output.
fn write_config(work: &Path, manifest: &Path) -> PathBuf {
    let text = format!(
        "[model]\narchitecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\n\
         weights = {:?}\nnuclei_classes = [\"Background\", \"Dark\", \"Pale\", \"Large\"]\n\
         device = \"cpu\"\nbatch_size = 8\n\
         [io]\npatch_input = 256\npatch_output = 164\nstride = 164\nmargin = 128\n\
         resolution = {{ mpp = 0.5 }}\ntile_shape = 2048\n\
         [input]\nmanifest = {:?}\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\nformats = [\"annotationstore\"]\n\
         [pipeline]\nmemory_limit = \"2GiB\"\nthreads = 1\n",
        cheap_model().display().to_string(),
        manifest.display().to_string(),
        work.join("out").display().to_string(),
    );
    let p = work.join("cohort.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// What one array task of a cohort submission left: its exit code and progress events.
struct Task {
    rc: i32,
    events: Vec<Value>,
    stderr_path: PathBuf,
    stderr: String,
}

/// The end of every task's stderr, for failure messages (the work directory is removed when
/// the test fails).
fn dump(tasks: &[Task]) -> String {
    let mut s = String::new();
    for (i, t) in tasks.iter().enumerate() {
        // per-batch progress would drown the slides' events
        let lines: Vec<&str> = t
            .stderr
            .lines()
            .filter(|l| !l.contains(r#""event":"patches_done""#))
            .collect();
        let tail = &lines[lines.len().saturating_sub(25)..];
        s += &format!(
            "--- task {i} (exit {}), {} ---\n{}\n",
            t.rc,
            t.stderr_path.display(),
            tail.join("\n")
        );
    }
    s
}

fn read_tasks(work: &Path, run: &str, cluster: &Cluster) -> Vec<Task> {
    (0..TASKS)
        .map(|t| {
            let rc_path = work.join(format!("logs/{run}_task{t}.rc"));
            let stderr_path = work.join(format!("logs/{run}_task{t}.err"));
            let rc = std::fs::read_to_string(&rc_path).unwrap_or_else(|e| {
                panic!(
                    "{run}: task {t} left no {} ({e}): it did not run to the end\n{}",
                    rc_path.display(),
                    cluster.logs()
                )
            });
            let stderr = std::fs::read_to_string(&stderr_path).unwrap();
            let events = stderr
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| {
                        panic!("{}: bad JSON line ({e}): {l}", stderr_path.display())
                    })
                })
                .collect();
            Task {
                rc: rc.trim().parse().unwrap(),
                events,
                stderr_path,
                stderr,
            }
        })
        .collect()
}

/// The file name of an event's `path`.
fn slide_name(e: &Value) -> String {
    let p = e["path"]
        .as_str()
        .unwrap_or_else(|| panic!("event without a path: {e}"));
    Path::new(p)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Slide name → how many events of `kind` name it, over all tasks.
fn count_events(tasks: &[Task], kind: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        for e in t.events.iter().filter(|e| e["event"] == kind) {
            *m.entry(slide_name(e)).or_insert(0) += 1;
        }
    }
    m
}

fn events<'a>(tasks: &'a [Task], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    tasks
        .iter()
        .flat_map(|t| t.events.iter())
        .filter(move |e| e["event"] == kind)
}

/// Every task exited 0, except the one whose shard holds the corrupt slide: 3 (slides failed).
fn check_exit_codes(run: &str, tasks: &[Task]) {
    for (i, t) in tasks.iter().enumerate() {
        let has_corrupt =
            events(std::slice::from_ref(t), "slide_failed").any(|e| slide_name(e) == CORRUPT);
        let want = if has_corrupt { 3 } else { 0 };
        assert_eq!(t.rc, want, "{run}: task {i} exit code\n{}", dump(tasks));
    }
}

/// `mtseg-pipeline status --config CFG --json`: 6 done, the corrupt one failed with its error.
fn check_status(cfg: &Path, names: &[String]) {
    let o = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"))
        .args(["status", "--config"])
        .arg(cfg)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "status --json:\n{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}):\n{}", text(&o)));
    let counts = &v["counts"];
    for (key, want) in [
        ("done", GOOD),
        ("failed", 1),
        ("pending", 0),
        ("in_progress", 0),
    ] {
        assert_eq!(counts[key], want, "counts.{key} in {v:#}");
    }
    let slides = v["slides"].as_array().unwrap();
    let listed: BTreeSet<String> = slides
        .iter()
        .map(|s| {
            let p = s["slide"].as_str().unwrap();
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, names.iter().cloned().collect(), "{v:#}");
    for s in slides {
        let name = Path::new(s["slide"].as_str().unwrap()).file_name().unwrap();
        if name.to_str() == Some(CORRUPT) {
            assert_eq!(s["state"], "failed", "{s}");
            let err = s["error"].as_str().unwrap_or("");
            assert!(!err.trim().is_empty(), "the failed slide has no error: {s}");
        } else {
            assert_eq!(s["state"], "done", "{s}");
        }
    }
}

#[test]
fn cohort_array_job_on_a_local_slurm_cluster() {
    let bin = env!("CARGO_BIN_EXE_mtseg-pipeline");
    let cluster = Cluster::start();
    // the job files, slides and outputs live in the cluster's directory, so that the next run
    // removes them too when this one is killed
    let work = &cluster.dir().join("work");
    std::fs::create_dir(work).unwrap();
    eprintln!(
        "local Slurm cluster up in {:.1} s ({})",
        cluster.start_s,
        cluster.dir().display()
    );

    // ---- 1. the cluster runs an array task ---------------------------------------------------
    let script = job_script(
        work,
        "check",
        &format!(
            "{{ echo \"task=$t count=$SLURM_ARRAY_TASK_COUNT min=$SLURM_ARRAY_TASK_MIN\"; \
             {bin} --version; }} > {w}/logs/check_task$t.txt 2>&1\necho $? > {w}/logs/check_task$t.rc",
            w = work.display()
        ),
    );
    let check_s = cluster.run_array(&script, work, "check");
    let version = format!("mtseg-pipeline {}", env!("CARGO_PKG_VERSION"));
    for t in 0..TASKS {
        let out = std::fs::read_to_string(work.join(format!("logs/check_task{t}.txt")))
            .unwrap_or_else(|e| panic!("check task {t} left no output ({e})\n{}", cluster.logs()));
        let rc = std::fs::read_to_string(work.join(format!("logs/check_task{t}.rc"))).unwrap();
        assert_eq!(rc.trim(), "0", "check task {t}:\n{out}");
        assert!(
            out.contains(&format!("task={t} count={TASKS} min=0")),
            "check task {t} saw other Slurm variables:\n{out}"
        );
        assert!(out.contains(&version), "check task {t}:\n{out}");
    }

    // ---- 2. the cohort over the array --------------------------------------------------------
    let (manifest, names) = make_cohort(work);
    let cfg = write_config(work, &manifest);
    let cohort_job = |run: &str| {
        job_script(
            work,
            run,
            &format!(
                "{bin} --config {cfg} --progress json 2> {w}/logs/{run}_task$t.err\n\
                 echo $? > {w}/logs/{run}_task$t.rc",
                cfg = cfg.display(),
                w = work.display()
            ),
        )
    };
    let run1_s = cluster.run_array(&cohort_job("run1"), work, "run1");
    let run1 = read_tasks(work, "run1", &cluster);
    let good: BTreeMap<String, usize> = names[..GOOD].iter().map(|n| (n.clone(), 1)).collect();
    let started1 = count_events(&run1, "slide_started");
    assert!(
        started1.values().all(|&n| n == 1),
        "run 1 processed a slide twice: {started1:?}\n{}",
        dump(&run1)
    );
    let failed_corrupt = BTreeMap::from([(CORRUPT.to_string(), 1)]);
    assert_eq!(
        count_events(&run1, "slide_finished"),
        good,
        "run 1 finished\n{}",
        dump(&run1)
    );
    assert_eq!(
        count_events(&run1, "slide_failed"),
        failed_corrupt,
        "run 1 failed\n{}",
        dump(&run1)
    );
    assert_eq!(
        count_events(&run1, "slide_skipped"),
        BTreeMap::new(),
        "run 1 skipped\n{}",
        dump(&run1)
    );
    // the shards are disjoint and cover the manifest
    let mut seen = BTreeSet::new();
    for (i, t) in run1.iter().enumerate() {
        let mine: BTreeSet<String> = t
            .events
            .iter()
            .filter(|e| e["event"] == "slide_finished" || e["event"] == "slide_failed")
            .map(slide_name)
            .collect();
        assert!(
            seen.is_disjoint(&mine),
            "run 1: task {i} repeats slides of another task\n{}",
            dump(&run1)
        );
        seen.extend(mine);
    }
    assert_eq!(seen, names.iter().cloned().collect());
    for e in events(&run1, "slide_failed") {
        assert!(
            !e["error"].as_str().unwrap_or("").is_empty(),
            "slide_failed without an error: {e}"
        );
    }
    check_exit_codes("run 1", &run1);
    check_status(&cfg, &names);

    // ---- 3. the same array again: done slides are skipped ------------------------------------
    let run2_s = cluster.run_array(&cohort_job("run2"), work, "run2");
    let run2 = read_tasks(work, "run2", &cluster);
    assert_eq!(
        count_events(&run2, "slide_skipped"),
        good,
        "run 2 skipped\n{}",
        dump(&run2)
    );
    for e in events(&run2, "slide_skipped") {
        assert_eq!(e["reason"], "complete", "{e}");
        assert!(e["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{e}");
    }
    assert_eq!(
        count_events(&run2, "slide_finished"),
        BTreeMap::new(),
        "run 2 finished slides again\n{}",
        dump(&run2)
    );
    assert_eq!(
        count_events(&run2, "slide_failed"),
        failed_corrupt,
        "run 2 failed\n{}",
        dump(&run2)
    );
    let started2 = count_events(&run2, "slide_started");
    assert!(
        started2.keys().all(|n| n == CORRUPT),
        "run 2 processed done slides again: {started2:?}\n{}",
        dump(&run2)
    );
    check_exit_codes("run 2", &run2);
    check_status(&cfg, &names);

    // ---- summary -----------------------------------------------------------------------------
    let wall: BTreeMap<String, f64> = events(&run1, "slide_finished")
        .map(|e| (slide_name(e), e["wall_s"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    let skip: BTreeMap<String, f64> = events(&run2, "slide_skipped")
        .map(|e| (slide_name(e), e["seconds"].as_f64().unwrap()))
        .collect();
    eprintln!(
        "\nslurm cohort: {TASKS} array tasks, {} slides (submission = sbatch until squeue shows \
         every task ended)",
        names.len()
    );
    eprintln!("  {:<32} {:>8.2} s", "cluster start", cluster.start_s);
    eprintln!("  {:<32} {:>8.2} s", "check array (--version)", check_s);
    eprintln!("  {:<32} {:>8.2} s", "run 1 (6 slides + 1 corrupt)", run1_s);
    eprintln!("  {:<32} {:>8.2} s", "run 2 (resubmission)", run2_s);
    eprintln!(
        "  {:<14} {:>12} {:>14}",
        "slide", "run 1 wall s", "run 2 skip s"
    );
    for n in &names {
        let fmt = |m: &BTreeMap<String, f64>| m.get(n).map_or("-".into(), |s| format!("{s:.4}"));
        eprintln!("  {:<14} {:>12} {:>14}", n, fmt(&wall), fmt(&skip));
    }
}
