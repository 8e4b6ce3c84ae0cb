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
        "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"cpu\"\nprecision = \"bf16\"\n{INPUT}"
    ));
    assert_eq!(e.key(), Some("model.precision"));
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
