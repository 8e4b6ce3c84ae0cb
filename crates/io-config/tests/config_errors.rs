//! Every way a config can be wrong gives a message naming the file, the line and the key.

use std::path::Path;

use mtseg_io_config::{ConfigError, RunConfig};

fn parse(toml: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::from_toml(toml, Path::new("run.toml"))
}

fn err(toml: &str) -> ConfigError {
    parse(toml).expect_err("config should be rejected")
}

const INPUT: &str = "[input]\nslides = [\"a.svs\"]\n";

#[test]
fn unknown_key_names_file_line_key_and_closest_key() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstrde = 100\n{INPUT}"
    ));
    assert_eq!(e.line(), Some(4));
    assert_eq!(e.key(), Some("io.strde"));
    let text = e.to_string();
    assert!(text.starts_with("run.toml:4:"), "{text}");
    assert!(text.contains("did you mean `stride`?"), "{text}");
}

#[test]
fn unknown_table_is_rejected_with_a_hint() {
    let e = err(&format!("[modle]\npreset = \"x\"\n{INPUT}"));
    let text = e.to_string();
    assert!(text.contains("unknown key `modle`"), "{text}");
    assert!(text.contains("did you mean `model`?"), "{text}");
    assert_eq!(e.line(), Some(1));
}

#[test]
fn zero_stride_is_rejected_with_its_line() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstride = 0\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.stride"));
    assert_eq!(e.line(), Some(4));
    assert!(e.to_string().contains("must be positive, got 0"), "{e}");
}

#[test]
fn negative_stride_is_rejected() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstride = [-4, 164]\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.stride"));
    assert!(e.to_string().contains("must be positive, got -4"), "{e}");
}

#[test]
fn stride_larger_than_patch_output_is_rejected() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nstride = 200\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.stride"));
    let text = e.to_string();
    assert!(
        text.contains("a stride of 200 is larger than the output patch (164)"),
        "{text}"
    );
    assert!(text.contains("between 1 and 164"), "{text}");
}

#[test]
fn unknown_preset_lists_the_presets_and_the_closest() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuk\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.preset"));
    assert_eq!(e.line(), Some(2));
    let text = e.to_string();
    assert!(
        text.contains("unknown preset `hovernet_fast-pannuk`"),
        "{text}"
    );
    assert!(
        text.contains("did you mean `hovernet_fast-pannuke`?"),
        "{text}"
    );
}

#[test]
fn wrong_value_type_names_the_key() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = \"eight\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.batch_size"));
    assert_eq!(e.line(), Some(3));
}

#[test]
fn invalid_toml_is_reported_with_its_line() {
    let e = err("[model]\npreset = \n");
    assert_eq!(e.line(), Some(2));
}

#[test]
fn output_larger_than_input_is_rejected() {
    let e = err(&format!(
        "[model]\narchitecture = \"torchscript\"\nheads = [\"np\", \"hv\"]\n[io]\nresolution = {{ mpp = 0.5 }}\npatch_input = 64\npatch_output = 80\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.patch_output"));
    assert!(
        e.to_string()
            .contains("cannot be larger than the input patch"),
        "{e}"
    );
}

#[test]
fn tile_smaller_than_patch_and_wide_margin_are_rejected() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\ntile_shape = 100\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.tile_shape"));
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nmargin = 600\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.margin"));
    assert!(e.to_string().contains("984"), "{e}");
}

#[test]
fn native_architecture_rejects_other_patch_sizes() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\npatch_input = 300\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.patch_input"));
    assert!(
        e.to_string().contains("takes 256 x 256 input patches"),
        "{e}"
    );
}

#[test]
fn missing_model_and_input_are_explained() {
    let e = err(INPUT);
    assert_eq!(e.key(), Some("model.architecture"));
    let e = err("[model]\npreset = \"hovernet_fast-pannuke\"\n");
    assert_eq!(e.key(), Some("input.slides"));
}

#[test]
fn glob_without_match_is_an_error() {
    let e = err(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"/nonexistent-dir-xyz/*.svs\"]\n",
    );
    assert_eq!(e.key(), Some("input.slides"));
    assert!(e.to_string().contains("no file matches"), "{e}");
}

#[test]
fn bad_enum_values_suggest_the_closest() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[output]\nformats = [\"qupth\"]\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("output.formats"));
    assert!(e.to_string().contains("did you mean `qupath`?"), "{e}");
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"gpu\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.device"));
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"cpu\"\nprecision = \"fp16\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.precision"));
    assert!(e.to_string().contains("\"bf16\" or \"fp32\""), "{e}");
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[pipeline]\nmemory_limit = \"lots\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("pipeline.memory_limit"));
    assert_eq!(e.line(), Some(4));
}

#[test]
fn resolution_needs_exactly_one_unit() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nresolution = {{ mpp = 0.25, power = 40 }}\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("io.resolution"));
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nresolution = {{ mpp = -1 }}\n{INPUT}"
    ));
    assert!(e.to_string().contains("positive"), "{e}");
}

#[test]
fn missing_config_file_names_the_path() {
    let e = RunConfig::from_file("/nonexistent/run.toml").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/run.toml"), "{e}");
}

#[test]
fn memory_limits_follow_the_shared_grammar_and_zero_is_refused() {
    for (text, reason) in [
        ("0", "a limit of zero bytes leaves no memory to work with"),
        ("0GiB", "a limit of zero bytes"),
        ("0.4", "a limit of zero bytes"),
        ("0%", "a limit of 0% leaves no memory"),
        ("150%", "a percentage of RAM must be at most 100%"),
        ("8 parsecs", "unknown unit `parsecs`"),
        ("unlimited", "no number"),
        ("-1GB", "no number"),
    ] {
        let e = err(&format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[pipeline]\nmemory_limit = \"{text}\"\n{INPUT}"
        ));
        assert_eq!(e.key(), Some("pipeline.memory_limit"), "{text}");
        assert_eq!(e.line(), Some(4), "{text}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("invalid memory limit `{text}`: {reason}")),
            "{text}: {msg}"
        );
    }
}

#[test]
fn devices_follow_the_shared_grammar() {
    for bad in ["gpu", "cuda:", "cuda:+1", "cuda:x", "cuda 1"] {
        let e = err(&format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"{bad}\"\n{INPUT}"
        ));
        assert_eq!(e.key(), Some("model.device"));
        assert_eq!(e.line(), Some(3));
        assert!(
            e.to_string().contains(&format!(
                "invalid device `{bad}`: expected \"cpu\", \"auto\", \"cuda\" or \"cuda:N\""
            )),
            "{e}"
        );
    }
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nprecision = \"fp8\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.precision"));
    assert!(e.to_string().contains("invalid precision `fp8`"), "{e}");
}

#[test]
fn torchscript_heads_need_their_classes_and_no_repeats() {
    let ts = |heads: &str, extra: &str| {
        format!(
            "[model]\narchitecture = \"torchscript\"\nheads = {heads}\n{extra}[io]\nresolution = {{ mpp = 0.5 }}\npatch_input = 128\npatch_output = 96\n{INPUT}"
        )
    };
    let e = err(&ts(r#"["np", "hv", "tp"]"#, ""));
    assert_eq!(e.key(), Some("model.nuclei_classes"));
    assert_eq!(e.line(), Some(3));
    assert!(
        e.to_string()
            .contains("with a `tp` head needs `nuclei_classes`"),
        "{e}"
    );
    let e = err(&ts(
        r#"["np", "hv", "ls"]"#,
        "nuclei_classes = [\"bg\", \"a\"]\n",
    ));
    assert_eq!(e.key(), Some("model.layer_classes"));
    let e = err(&ts(r#"["np", "hv", "np"]"#, ""));
    assert_eq!(e.key(), Some("model.heads"));
    assert!(e.to_string().contains("head np is declared twice"), "{e}");
    let e = err(&ts(r#"["np", "xx"]"#, ""));
    assert!(
        e.to_string()
            .contains("invalid head `xx`: heads are np, hv, tp and ls"),
        "{e}"
    );
}

#[test]
fn width_divisor_is_checked_against_the_shared_values() {
    let e = err(&format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nwidth_divisor = 3\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.width_divisor"));
    assert!(e.to_string().contains("must be 1, 2, 4 or 8"), "{e}");
    let e = err(&format!(
        "[model]\npreset = \"hovernet_original-kumar\"\nwidth_divisor = 2\n{INPUT}"
    ));
    assert!(
        e.to_string()
            .contains("applies to architecture = \"hovernet-fast\" only"),
        "{e}"
    );
}
