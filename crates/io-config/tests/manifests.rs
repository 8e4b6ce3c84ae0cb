//! `[input] manifest` files (plain lists and CSV with per-slide mask, mpp and stem), shards of
//! the slide list, and the `[pipeline]` worker and checkpoint keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mtseg_io_config::{
    ConfigError, MaskSpec, RunConfig, Shard, ShardChoice, ShardSource, SlideInput, SlideOrigin,
};

/// A manifest written into a temporary directory, and the config that names it.
struct Manifest {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Manifest {
    fn new(name: &str, text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        Self { dir, file }
    }

    fn csv(text: &str) -> Self {
        Self::new("cohort.csv", text)
    }

    /// Touches `name` (and its directories) inside the manifest's directory.
    fn touch(&self, name: &str) -> &Self {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
        self
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self, input: &str) -> Result<RunConfig, ConfigError> {
        let toml = format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nmanifest = \"{}\"\n{input}\n",
            self.file.display()
        );
        RunConfig::from_toml(&toml, Path::new("run.toml"))
    }

    fn slides(&self) -> Vec<SlideInput> {
        self.config("").unwrap().input.slides
    }

    fn err(&self) -> ConfigError {
        self.config("")
            .expect_err("the manifest should be rejected")
    }

    fn origin(&self, line: usize) -> SlideOrigin {
        SlideOrigin::Manifest {
            file: self.file.clone(),
            line,
        }
    }
}

/// Checks that `e` is a manifest error at `line` in `column`, and that its message names the
/// manifest, the line and the column and contains `says`.
fn assert_row_error(m: &Manifest, e: &ConfigError, line: usize, column: Option<&str>, says: &str) {
    assert!(matches!(e, ConfigError::Manifest { .. }), "{e:?}");
    assert_eq!(e.line(), Some(line), "{e}");
    assert_eq!(e.manifest_column(), column, "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}:{line}: ", m.file.display())),
        "{text}"
    );
    if let Some(c) = column {
        assert!(text.contains(&format!("column `{c}`: ")), "{text}");
    }
    assert!(text.contains(says), "{text}");
}

#[test]
fn csv_with_every_column() {
    let m = Manifest::csv(
        "slide,mask,mpp,stem\n\
         scans/a.svs,masks/a.png,0.25,case-a\n\
         /abs/b.tif,none,0.5,case-b\n\
         c.svs,auto,1e-1,case-c\n",
    );
    let slides = m.slides();
    assert_eq!(
        slides,
        vec![
            SlideInput {
                path: m.at("scans/a.svs"),
                mask: Some(MaskSpec::Path(m.at("masks/a.png").display().to_string())),
                mpp: Some(0.25),
                stem: Some("case-a".into()),
                origin: m.origin(2),
            },
            SlideInput {
                path: PathBuf::from("/abs/b.tif"),
                mask: Some(MaskSpec::None),
                mpp: Some(0.5),
                stem: Some("case-b".into()),
                origin: m.origin(3),
            },
            SlideInput {
                path: m.at("c.svs"),
                mask: Some(MaskSpec::Auto),
                mpp: Some(0.1),
                stem: Some("case-c".into()),
                origin: m.origin(4),
            },
        ]
    );
    assert_eq!(slides[0].stem(), "case-a");
}

#[test]
fn csv_columns_in_any_order_and_any_case() {
    let m = Manifest::csv(" Stem , MPP,slide\nx,2,a.svs\n");
    assert_eq!(
        m.slides(),
        vec![SlideInput {
            path: m.at("a.svs"),
            mask: None,
            mpp: Some(2.0),
            stem: Some("x".into()),
            origin: m.origin(2),
        }]
    );
    // `slide` alone is a CSV too.
    let m = Manifest::csv("slide\na.svs\n\"b.svs\"\n");
    let paths: Vec<PathBuf> = m.slides().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, vec![m.at("a.svs"), m.at("b.svs")]);
}

#[test]
fn csv_quoted_fields_hold_commas_quotes_and_line_breaks() {
    let m = Manifest::csv(
        "slide,stem\n\
         \"scans/a, left.svs\",\"patient 1, block A\"\n\
         \"say \"\"hi\"\".svs\",\n\
         \"two\nlines.svs\",two\n\
         next.svs,\n",
    );
    let slides = m.slides();
    let got: Vec<(PathBuf, Option<&str>, SlideOrigin)> = slides
        .iter()
        .map(|s| (s.path.clone(), s.stem.as_deref(), s.origin.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                m.at("scans/a, left.svs"),
                Some("patient 1, block A"),
                m.origin(2)
            ),
            (m.at("say \"hi\".svs"), None, m.origin(3)),
            (m.at("two\nlines.svs"), Some("two"), m.origin(4)),
            // the row after a quoted line break is on line 6
            (m.at("next.svs"), None, m.origin(6)),
        ]
    );
    assert_eq!(slides[1].stem(), "say \"hi\"");
}

#[test]
fn csv_empty_cells_fall_back_to_the_config() {
    let m = Manifest::csv(
        "slide,mask,mpp,stem\n\
         a.svs,,,\n\
         b.svs , m.png , , \n\
         c.svs\n\
         d.svs,,0.3\n",
    );
    let cfg = m
        .config("mask = \"masks/{stem}.png\"\nmpp = 0.5\n")
        .unwrap();
    let input = &cfg.input;
    let [a, b, c, d] = &input.slides[..] else {
        panic!("{:?}", input.slides)
    };
    for s in [a, c] {
        assert_eq!((&s.mask, s.mpp, &s.stem), (&None, None, &None), "{s:?}");
        assert_eq!(
            input.mask_for(s),
            &MaskSpec::Path("masks/{stem}.png".into())
        );
        assert_eq!(input.mpp_for(s), Some(0.5));
    }
    assert_eq!(b.path, m.at("b.svs"));
    assert_eq!(
        input.mask_for(b),
        &MaskSpec::Path(m.at("m.png").display().to_string())
    );
    assert_eq!(input.mpp_for(b), Some(0.5));
    assert_eq!(input.mpp_for(d), Some(0.3));
    assert_eq!(c.stem(), "c");
    // no `[input] mpp`: a slide without its own has none
    let cfg = m.config("").unwrap();
    assert_eq!(cfg.input.mpp_for(&cfg.input.slides[0]), None);
    assert_eq!(cfg.input.mask_for(&cfg.input.slides[0]), &MaskSpec::Auto);
}

#[test]
fn csv_comments_blank_lines_and_a_byte_order_mark_are_skipped() {
    let m = Manifest::csv(
        "\u{feff}# cohort 7, \"quoted\n\nslide,mpp\n  # first batch\na.svs,0.25\n\n  \n,\nb.svs,\n",
    );
    let slides = m.slides();
    let got: Vec<(PathBuf, SlideOrigin)> = slides
        .iter()
        .map(|s| (s.path.clone(), s.origin.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(m.at("a.svs"), m.origin(5)), (m.at("b.svs"), m.origin(9))]
    );
}

#[test]
fn csv_with_windows_line_ends_counts_lines_alike() {
    let m = Manifest::csv("slide,mpp\r\n# x\r\na.svs,0.25\r\n\r\nb.svs,bad\r\n");
    assert_row_error(&m, &m.err(), 5, Some("mpp"), "`bad` is not a number");
    let m = Manifest::csv("slide,mpp\r\n# x\r\na.svs,0.25\r\n");
    assert_eq!(m.slides()[0].origin, m.origin(3));
    assert_eq!(m.slides()[0].mpp, Some(0.25));
}

#[test]
fn csv_glob_rows_share_their_overrides() {
    let m = Manifest::csv("slide,mpp,mask\nscans/*.png,0.5,none\nlast.svs,,\n");
    m.touch("scans/b.png")
        .touch("scans/a.png")
        .touch("scans/c.txt");
    let slides = m.slides();
    let got: Vec<(PathBuf, Option<f64>, Option<MaskSpec>, usize)> = slides
        .iter()
        .map(|s| {
            let SlideOrigin::Manifest { line, .. } = s.origin else {
                panic!()
            };
            (s.path.clone(), s.mpp, s.mask.clone(), line)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (m.at("scans/a.png"), Some(0.5), Some(MaskSpec::None), 2),
            (m.at("scans/b.png"), Some(0.5), Some(MaskSpec::None), 2),
            (m.at("last.svs"), None, None, 3),
        ]
    );
}

#[test]
fn csv_bad_header_names_the_column() {
    let m = Manifest::csv("# cohort\nslide,maks\na.svs,m.png\n");
    assert_row_error(
        &m,
        &m.err(),
        2,
        Some("maks"),
        "unknown column `maks`; the columns are slide, mask, mpp, stem (did you mean `mask`?)",
    );
    let m = Manifest::csv("mask,slide,Mask\n");
    assert_row_error(&m, &m.err(), 1, Some("mask"), "named twice");
    let m = Manifest::csv("slide,,mpp\n");
    assert_row_error(
        &m,
        &m.err(),
        1,
        Some(""),
        "column 2 of the header has no name",
    );
}

#[test]
fn csv_bad_rows_name_the_line_and_the_column() {
    let cases: [(&str, usize, Option<&str>, &str); 9] = [
        (
            "slide,mpp\na.svs,0.5\n,0.25\n",
            3,
            Some("slide"),
            "the row has no slide path",
        ),
        (
            "slide,mpp\na.svs,abc\n",
            2,
            Some("mpp"),
            "`abc` is not a number of microns per pixel",
        ),
        (
            "slide,mpp\n\na.svs,0.5\nb.svs,-0.25\n",
            4,
            Some("mpp"),
            "must be a positive number of microns per pixel, got `-0.25`",
        ),
        ("slide,mpp\na.svs,0\n", 2, Some("mpp"), "got `0`"),
        ("slide,mpp\na.svs,NaN\n", 2, Some("mpp"), "got `NaN`"),
        (
            "slide,mpp\na.svs,0.5,extra\n",
            2,
            None,
            "the row has 3 fields but the header names 2 columns (slide, mpp); quote a field \
             that holds a comma",
        ),
        (
            "slide,stem\na.svs,x\nb.svs,y\nc.svs,x\n",
            4,
            Some("stem"),
            "output stem `x` is already used by line 2",
        ),
        (
            "slide,stem\nleft/s1.svs,\nright/s1.svs,\n",
            3,
            Some("slide"),
            "output stem `s1` is already used by line 2 (their outputs would overwrite each \
             other); add a `stem` column",
        ),
        (
            "slide,stem\na.svs,../escape\n",
            2,
            Some("stem"),
            "`../escape` is not a file name",
        ),
    ];
    for (text, line, column, says) in cases {
        let m = Manifest::csv(text);
        assert_row_error(&m, &m.err(), line, column, says);
    }
}

#[test]
fn csv_a_stem_given_to_a_glob_row_would_collide() {
    let m = Manifest::csv("slide,stem\nscans/*.svs,one\n");
    m.touch("scans/a.svs").touch("scans/b.svs");
    assert_row_error(
        &m,
        &m.err(),
        2,
        Some("stem"),
        "the glob matches several files with the output stem `one`",
    );
}

#[test]
fn plain_lists_keep_their_grammar() {
    // A first line with commas but no `slide` field is a path, as before.
    let m = Manifest::new(
        "list.txt",
        "# slides\n\nscan, left.svs\n  b/c.svs  \n#x.svs\nslides.svs\n",
    );
    let slides = m.slides();
    assert_eq!(
        slides,
        vec![
            SlideInput {
                origin: m.origin(3),
                ..SlideInput::new(m.at("scan, left.svs"))
            },
            SlideInput {
                origin: m.origin(4),
                ..SlideInput::new(m.at("b/c.svs"))
            },
            SlideInput {
                origin: m.origin(6),
                ..SlideInput::new(m.at("slides.svs"))
            },
        ]
    );
    // Two plain entries may share a file stem (no stem column to tell them apart).
    let m = Manifest::new("list.txt", "a/x.svs\nb/x.svs\n");
    assert_eq!(m.slides().len(), 2);
    let m = Manifest::new("list.txt", "# nothing\n");
    let e = m.err();
    assert_eq!(e.key(), Some("input.manifest"));
    assert!(
        e.to_string().contains("the manifest lists no inputs"),
        "{e}"
    );
}

#[test]
fn config_slides_come_first_then_the_manifest() {
    let m = Manifest::csv("slide,stem\nm.svs,mine\n");
    let toml = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"s.svs\"]\n\
         manifest = \"{}\"\n",
        m.file.display()
    );
    let cfg = RunConfig::from_toml(&toml, Path::new("run.toml")).unwrap();
    let stems: Vec<String> = cfg.input.slides.iter().map(SlideInput::stem).collect();
    assert_eq!(stems, vec!["s", "mine"]);
    assert_eq!(cfg.input.slides[0].origin, SlideOrigin::Slides);
}

#[test]
fn shard_key_is_parsed_and_checked() {
    let m = Manifest::new("list.txt", "a.svs\nb.svs\nc.svs\n");
    let cfg = m.config("shard = \"1/2\"").unwrap();
    assert_eq!(cfg.input.shard, Some(Shard::new(1, 2).unwrap()));
    assert_eq!(m.config("").unwrap().input.shard, None);
    for (text, says) in [
        ("2/2", "the index must be below the count"),
        ("0/0", "the shard count must be at least 1"),
        ("half", "expected \"i/N\""),
    ] {
        let e = m.config(&format!("shard = \"{text}\"")).unwrap_err();
        assert_eq!(e.key(), Some("input.shard"), "{text}");
        assert_eq!(e.line(), Some(5), "{text}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn shards_split_the_slides_round_robin() {
    let list: String = (0..10).map(|i| format!("s{i}.svs\n")).collect();
    let m = Manifest::new("list.txt", &list);
    let input = m.config("").unwrap().input;
    assert_eq!(input.shard_slides(None), (0..10).collect::<Vec<_>>());
    let shard = |i| Some(Shard::new(i, 4).unwrap());
    assert_eq!(input.shard_slides(shard(0)), vec![0, 4, 8]);
    assert_eq!(input.shard_slides(shard(3)), vec![3, 7]);
    let mut all: Vec<usize> = (0..4).flat_map(|i| input.shard_slides(shard(i))).collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    // more shards than slides: the last ones are empty
    assert_eq!(
        input.shard_slides(Some(Shard::new(12, 13).unwrap())),
        Vec::<usize>::new()
    );
}

#[test]
fn shard_precedence_is_flag_then_config_then_slurm() {
    let m = Manifest::new("list.txt", "a.svs\n");
    let with_key = m.config("shard = \"1/3\"").unwrap().input;
    let without = m.config("").unwrap().input;
    let s = |i, n| Shard::new(i, n).unwrap();
    let slurm = |name: &str| {
        match name {
            "SLURM_ARRAY_TASK_ID" => Some("5"),
            "SLURM_ARRAY_TASK_COUNT" => Some("5"),
            "SLURM_ARRAY_TASK_MIN" => Some("1"),
            "SLURM_ARRAY_TASK_STEP" => Some("1"),
            _ => None,
        }
        .map(String::from)
    };
    let broken = |name: &str| (name == "SLURM_ARRAY_TASK_ID").then(|| "x".to_string());
    let choice = |shard, source| Ok(Some(ShardChoice { shard, source }));

    assert_eq!(
        with_key.choose_shard(Some(s(0, 2)), slurm),
        choice(s(0, 2), ShardSource::Flag)
    );
    assert_eq!(
        with_key.choose_shard(None, slurm),
        choice(s(1, 3), ShardSource::Config)
    );
    assert_eq!(
        without.choose_shard(None, slurm),
        choice(s(4, 5), ShardSource::SlurmEnv)
    );
    assert_eq!(without.choose_shard(None, |_| None), Ok(None));
    // A broken Slurm environment matters only when it is the one consulted.
    assert_eq!(
        without.choose_shard(Some(s(0, 2)), broken),
        choice(s(0, 2), ShardSource::Flag)
    );
    assert_eq!(
        with_key.choose_shard(None, broken),
        choice(s(1, 3), ShardSource::Config)
    );
    let e = without.choose_shard(None, broken).unwrap_err();
    assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID=\"x\""), "{e}");
    assert_eq!(ShardSource::Flag.to_string(), "--shard");
}

fn pipeline(keys: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::from_toml(
        &format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"a.svs\"]\n\
             [pipeline]\n{keys}\n"
        ),
        Path::new("run.toml"),
    )
}

#[test]
fn worker_and_checkpoint_keys_have_documented_defaults() {
    let p = pipeline("").unwrap().pipeline;
    assert_eq!(p.workers, 0);
    assert!(p.checkpoint);
    assert_eq!(p.checkpoint_every, Duration::from_secs(10));
    let p = pipeline("workers = 3\ncheckpoint = false\ncheckpoint_every_s = 2.5")
        .unwrap()
        .pipeline;
    assert_eq!(p.workers, 3);
    assert!(!p.checkpoint);
    assert_eq!(p.checkpoint_every, Duration::from_millis(2500));
    // a whole number of seconds, and zero (every post-processing band)
    let p = pipeline("checkpoint_every_s = 0").unwrap().pipeline;
    assert_eq!(p.checkpoint_every, Duration::ZERO);
    let p = pipeline("checkpoint_every_s = 600").unwrap().pipeline;
    assert_eq!(p.checkpoint_every, Duration::from_secs(600));
}

#[test]
fn bad_worker_and_checkpoint_values_name_the_key() {
    for (keys, key, says) in [
        (
            "workers = -1",
            "pipeline.workers",
            "must be zero or positive, got -1",
        ),
        (
            "checkpoint_every_s = -5",
            "pipeline.checkpoint_every_s",
            "must be zero or a positive number of seconds, got -5",
        ),
        (
            "checkpoint_every_s = nan",
            "pipeline.checkpoint_every_s",
            "got NaN",
        ),
        (
            "checkpoint_every_s = inf",
            "pipeline.checkpoint_every_s",
            "inf seconds is too long",
        ),
        ("checkpoint = \"yes\"", "pipeline.checkpoint", ""),
        ("workers = 1.5", "pipeline.workers", ""),
    ] {
        let e = pipeline(keys).unwrap_err();
        assert_eq!(e.key(), Some(key), "{keys}: {e}");
        assert_eq!(e.line(), Some(6), "{keys}: {e}");
        assert!(e.to_string().contains(says), "{keys}: {e}");
    }
    let e = pipeline("checkpoint_evry_s = 3").unwrap_err();
    assert!(
        e.to_string().contains("did you mean `checkpoint_every_s`?"),
        "{e}"
    );
}
