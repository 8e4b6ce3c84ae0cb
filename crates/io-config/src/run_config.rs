//! The resolved run config: the preset applied, overrides merged, every value checked, globs and
//! the manifest expanded. Built once by [`RunConfig::from_file`]; stages get small parameter
//! structs made from it by the `pipeline` crate, never the whole config.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use mtseg_types::{Architecture, Device, HeadKind, HeadSpec, MemoryLimit, Precision, Size2};

use crate::config_errors::{ConfigError, Location, backticked, closest, table_at};
use crate::input_slides::SlideInput;
use crate::manifest::parse_manifest;
use crate::model_io::{ModelIo, ResolutionSpec};
use crate::presets::{PRESET_NAMES, preset};
use crate::raw_config::{RawConfig, RawResolution, RawShape, keys_of};
use crate::shard::Shard;

/// How patches are resampled when the processing resolution differs from a pyramid level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Area averaging when shrinking, bicubic when enlarging (what TIAToolbox documents).
    Optimise,
    /// What TIAToolbox 2.1.3's `read_bounds(coord_space="resolution")` really does: bicubic when
    /// shrinking and area when enlarging (its scale factor is inverted). For bit-level parity runs.
    TiaToolbox,
    /// Always area averaging.
    Area,
    /// Always bicubic.
    Cubic,
}

/// Whole-slide tiling or independent patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Whole-slide mode: any size, patch grid, stitching, tiles.
    Wsi,
    /// Patch mode: each input image is one model input patch (TIAToolbox's `patch_mode=True`).
    Patch,
}

/// Which tissue mask to use in WSI mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskSpec {
    /// Otsu threshold of the 1.25x thumbnail, as TIAToolbox's `auto_get_mask`.
    Auto,
    /// No mask: every patch is processed.
    None,
    /// A mask image per slide; `{stem}` in the pattern is replaced by the slide's stem
    /// ([`SlideInput::stem`]).
    Path(String),
}

/// How a patch's input box is matched against tissue-mask pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskRuleChoice {
    /// Every mask pixel the box touches (never drops a patch that overlaps tissue).
    Overlap,
    /// TIAToolbox 2.1.3's truncated scaling (for parity runs).
    TiaToolbox,
}

/// Which slide reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// Chosen from the file: OpenSlide for formats it knows, else TIFF, else plain image.
    Auto,
    /// OpenSlide.
    OpenSlide,
    /// The pure-Rust TIFF reader.
    Tiff,
    /// A plain PNG/JPEG/TIFF image read whole.
    Image,
}

/// An output file kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// TIAToolbox SQLite AnnotationStore (`.db`).
    AnnotationStore,
    /// QuPath GeoJSON detections (`.geojson`).
    QuPath,
    /// Zarr V3 store (`.zarr`).
    Zarr,
}

impl OutputFormat {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnnotationStore => "annotationstore",
            Self::QuPath => "qupath",
            Self::Zarr => "zarr",
        }
    }
}

/// `[model]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The preset the values came from, if any.
    pub preset: Option<String>,
    /// The network, with its heads, width divisor and (TorchScript) patch sizes.
    pub architecture: Architecture,
    /// The weights file (`.pth`, `.safetensors`, or TorchScript `.pt`).
    pub weights: Option<PathBuf>,
    /// Where to run (`device`, [`Device`]'s grammar).
    pub device: Device,
    /// Patches per forward pass.
    pub batch_size: NonZeroU32,
    /// Precision of the forward pass (`precision`, [`Precision`]'s grammar).
    pub precision: Precision,
    /// Nucleus class names, index = class id.
    pub nuclei_classes: Vec<String>,
    /// Tissue-layer class names, index = class id.
    pub layer_classes: Vec<String>,
}

/// `[input]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct InputConfig {
    /// WSI or patch mode.
    pub mode: InputMode,
    /// Every input: `slides` then the manifest's rows, globs expanded, in the order given.
    /// All of them, whatever the shard ([`InputConfig::shard_slides`] picks a shard's).
    pub slides: Vec<SlideInput>,
    /// Tissue mask choice (a manifest's `mask` cell overrides it: [`InputConfig::mask_for`]).
    pub mask: MaskSpec,
    /// How patches are matched against the mask.
    pub mask_rule: MaskRuleChoice,
    /// Microns per pixel of plain images that carry no resolution (a manifest's `mpp` cell
    /// overrides it: [`InputConfig::mpp_for`]).
    pub mpp: Option<f64>,
    /// Reader choice.
    pub backend: BackendChoice,
    /// `shard = "i/N"`: run only the slides of this shard (the CLI's `--shard` wins over it;
    /// see [`InputConfig::choose_shard`]).
    pub shard: Option<Shard>,
}

/// `[output]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// Output directory.
    pub dir: PathBuf,
    /// Formats to write.
    pub formats: Vec<OutputFormat>,
    /// Replace outputs that exist.
    pub overwrite: bool,
    /// Write dense instance / layer maps into the Zarr.
    pub save_predictions: bool,
    /// Write the stitched probability maps into the Zarr.
    pub save_probabilities: bool,
    /// Write `.geojson.gz` instead of `.geojson`.
    pub gzip_geojson: bool,
    /// Write `<stem>_overlay.png`: nucleus contours coloured by class over a region of the slide
    /// (at most 1024 x 1024 px at the processing resolution, centred on the tissue).
    pub overlay: bool,
}

/// `[pipeline]`, resolved. None of these change results, only speed and memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineConfig {
    /// Memory budget (`memory_limit`, [`MemoryLimit`]'s grammar; default 50% of the RAM).
    pub memory_limit: MemoryLimit,
    /// Capacity of each bounded channel between stages.
    pub queue_capacity: NonZeroU32,
    /// CPU threads (0 = all cores).
    pub threads: u32,
    /// Parallel patch readers (0 = automatic).
    pub read_workers: u32,
    /// Model workers on this node (`workers`; 0, the default, = one per device of
    /// `[model] device`).
    pub workers: u32,
    /// Whether a slide's run writes resume checkpoints (`checkpoint`, default true).
    pub checkpoint: bool,
    /// Time between resume checkpoints inside a slide (`checkpoint_every_s`, seconds >= 0,
    /// default 10 s); zero = at every post-processing band. Unused when `checkpoint` is false.
    pub checkpoint_every: Duration,
}

/// A checked run config.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[io]`, the preset with overrides applied.
    pub io: ModelIo,
    /// Resampling choice (`[io] interpolation`).
    pub interpolation: Interpolation,
    /// `[input]`.
    pub input: InputConfig,
    /// `[output]`.
    pub output: OutputConfig,
    /// `[pipeline]`.
    pub pipeline: PipelineConfig,
}

impl RunConfig {
    /// Reads and checks the config at `path`. Relative paths inside it are resolved against the
    /// current directory; manifest entries against the manifest's own directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&source, path)
    }

    /// Parses and checks `source`, reporting errors against `path`.
    pub fn from_toml(source: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(source).map_err(|e| toml_error(source, path, &e))?;
        Resolver { source, path }.resolve(raw)
    }
}

/// Turns a toml/serde error into a [`ConfigError`] with line, key and a "did you mean" hint.
fn toml_error(source: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let raw_message = e.message().trim().to_string();
    let span = e.span();
    let location = span.as_ref().map(|s| Location::of_offset(source, s.start));
    let table = span.as_ref().and_then(|s| table_at(source, s.start));
    let names = backticked(&raw_message);
    let message = raw_message.clone();
    let mut key = None;
    let mut hint = None;
    let mut message = format!("invalid config: {message}");
    if message.contains("unknown field") {
        if let Some(word) = names.first() {
            message = format!("unknown key `{word}`");
            let valid = keys_of(table.as_deref());
            key = Some(match &table {
                Some(t) => format!("{t}.{word}"),
                None => (*word).to_string(),
            });
            hint = Some(match closest(word, valid.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? valid keys here: {}", valid.join(", ")),
                None => format!("valid keys here: {}", valid.join(", ")),
            });
        }
    } else if let Some(s) = &span {
        // For value errors the span covers the value; name the key on that line.
        let line_start = source[..s.start].rfind('\n').map_or(0, |i| i + 1);
        let line = &source[line_start..];
        if let Some(eq) = line.find('=') {
            let k = line[..eq].trim();
            if !k.is_empty() && !k.starts_with('[') {
                key = Some(match &table {
                    Some(t) => format!("{t}.{k}"),
                    None => k.to_string(),
                });
            }
        }
    }
    ConfigError::Invalid {
        path: path.to_path_buf(),
        location,
        key,
        message,
        hint,
    }
}

/// The network as `[model]` names it, before `[io]` and the class names are known.
enum ArchChoice {
    /// A HoVer-Net flavour, complete.
    Native(Architecture),
    /// A TorchScript module with these heads, in output order.
    TorchScript(Vec<HeadKind>),
}

struct Resolver<'a> {
    source: &'a str,
    path: &'a Path,
}

impl Resolver<'_> {
    fn loc<T>(&self, v: &Spanned<T>) -> Option<Location> {
        Some(Location::of_offset(self.source, v.span().start))
    }

    fn err<T>(&self, v: &Spanned<T>, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.loc(v), key, msg)
    }

    fn missing(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, None, key, msg)
    }

    /// One of a fixed set of words, with a "did you mean" hint.
    fn choice<T: Copy>(
        &self,
        v: &Spanned<String>,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let word = v.get_ref().as_str();
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == word) {
            return Ok(*t);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let e = self.err(
            v,
            key,
            format!(
                "unknown value `{word}`; expected one of {}",
                names.join(", ")
            ),
        );
        Err(match closest(word, names.iter().copied()) {
            Some(c) => e.with_hint(format!("did you mean `{c}`?")),
            None => e,
        })
    }

    fn positive(&self, v: &Spanned<i64>, key: &str) -> Result<u32, ConfigError> {
        let n = *v.get_ref();
        if n <= 0 {
            return Err(self.err(v, key, format!("must be a positive whole number, got {n}")));
        }
        u32::try_from(n)
            .map_err(|_| self.err(v, key, format!("{n} is too large (at most {})", u32::MAX)))
    }

    fn non_negative(&self, v: &Spanned<i64>, key: &str) -> Result<u32, ConfigError> {
        let n = *v.get_ref();
        if n < 0 {
            return Err(self.err(v, key, format!("must be zero or positive, got {n}")));
        }
        u32::try_from(n)
            .map_err(|_| self.err(v, key, format!("{n} is too large (at most {})", u32::MAX)))
    }

    /// A shape as the config writes it (one number, or TIAToolbox's `[height, width]`).
    fn shape(&self, v: &Spanned<RawShape>, key: &str) -> Result<Size2, ConfigError> {
        let (h, w) = match v.get_ref() {
            RawShape::Square(n) => (*n, *n),
            RawShape::HeightWidth(hw) if hw.len() == 2 => (hw[0], hw[1]),
            RawShape::HeightWidth(hw) => {
                return Err(self.err(
                    v,
                    key,
                    format!(
                        "a shape is one number or [height, width]; got {} numbers",
                        hw.len()
                    ),
                ));
            }
        };
        for n in [h, w] {
            if n <= 0 {
                return Err(self.err(v, key, format!("must be positive, got {n}")));
            }
            if n > 1 << 20 {
                return Err(self.err(
                    v,
                    key,
                    format!("{n} px is not a plausible size (at most {})", 1 << 20),
                ));
            }
        }
        Ok(Size2::new(w as u64, h as u64))
    }

    fn resolution(
        &self,
        v: &Spanned<RawResolution>,
        key: &str,
    ) -> Result<ResolutionSpec, ConfigError> {
        let r = v.get_ref();
        let given: Vec<ResolutionSpec> = [
            r.mpp.map(ResolutionSpec::Mpp),
            r.power.map(ResolutionSpec::Power),
            r.baseline.map(ResolutionSpec::Baseline),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [one] = given.as_slice() else {
            return Err(self.err(
                v,
                key,
                "give exactly one of { mpp = .. }, { power = .. } or { baseline = .. }",
            ));
        };
        let value = one.value();
        if !(value.is_finite() && value > 0.0) {
            return Err(self.err(
                v,
                key,
                format!("resolution must be a positive number, got {value}"),
            ));
        }
        Ok(*one)
    }

    fn resolve(&self, raw: RawConfig) -> Result<RunConfig, ConfigError> {
        let rm = raw.model.unwrap_or_default();
        let ri = raw.io.unwrap_or_default();

        // ---- preset + architecture
        let preset = match &rm.preset {
            Some(p) => Some(preset(p.get_ref()).ok_or_else(|| {
                let e = self.err(
                    p,
                    "model.preset",
                    format!("unknown preset `{}`", p.get_ref()),
                );
                match closest(p.get_ref(), PRESET_NAMES) {
                    Some(c) => e.with_hint(format!(
                        "did you mean `{c}`? presets: {}",
                        PRESET_NAMES.join(", ")
                    )),
                    None => e.with_hint(format!("presets: {}", PRESET_NAMES.join(", "))),
                }
            })?),
            None => None,
        };
        let choice = self.architecture(&rm, preset.as_ref().map(|p| &p.architecture))?;

        // ---- io
        let base = preset.as_ref().map(|p| p.io);
        let resolution = match &ri.resolution {
            Some(r) => self.resolution(r, "io.resolution")?,
            None => base.map(|b| b.resolution).ok_or_else(|| {
                self.missing("io.resolution", "is required when no preset is given")
            })?,
        };
        let shape_or = |v: &Option<Spanned<RawShape>>, key: &str, from: Option<Size2>| match v {
            Some(s) => self.shape(s, key),
            None => from.ok_or_else(|| self.missing(key, "is required when no preset is given")),
        };
        let patch_input = shape_or(
            &ri.patch_input,
            "io.patch_input",
            base.map(|b| b.patch_input),
        )?;
        let patch_output = shape_or(
            &ri.patch_output,
            "io.patch_output",
            base.map(|b| b.patch_output),
        )?;
        // Without a preset the stride defaults to the output patch (no overlap), as the presets do.
        let stride = shape_or(
            &ri.stride,
            "io.stride",
            Some(base.map_or(patch_output, |b| b.stride)),
        )?;
        let tile_shape = shape_or(
            &ri.tile_shape,
            "io.tile_shape",
            Some(base.map_or(Size2::square(2048), |b| b.tile_shape)),
        )?;
        let margin = match &ri.margin {
            Some(m) => self.non_negative(m, "io.margin")?,
            None => base.map_or(128, |b| b.margin),
        };
        let io = ModelIo {
            resolution,
            patch_input,
            patch_output,
            stride,
            tile_shape,
            margin,
        };
        self.check_shapes(&io, &ri, &choice)?;
        let interpolation = match &ri.interpolation {
            Some(v) => self.choice(
                v,
                "io.interpolation",
                &[
                    ("optimise", Interpolation::Optimise),
                    ("optimize", Interpolation::Optimise),
                    ("tiatoolbox", Interpolation::TiaToolbox),
                    ("area", Interpolation::Area),
                    ("cubic", Interpolation::Cubic),
                ],
            )?,
            None => Interpolation::Optimise,
        };

        let model = self.model(rm, preset.as_ref(), choice, &io)?;
        let input = self.input(raw.input.unwrap_or_default())?;
        let output = self.output(raw.output.unwrap_or_default())?;
        let pipeline = self.pipeline(raw.pipeline.unwrap_or_default())?;
        if input.mode == InputMode::Patch
            && input.mask != MaskSpec::Auto
            && input.mask != MaskSpec::None
        {
            // A mask image has no meaning for independent patches; say so rather than ignore it.
            return Err(self.missing("input.mask", "a mask image cannot be used in patch mode"));
        }
        Ok(RunConfig {
            path: self.path.to_path_buf(),
            model,
            io,
            interpolation,
            input,
            output,
            pipeline,
        })
    }

    /// The network as far as `[model]` alone says: native architectures complete, a
    /// TorchScript module with its head kinds (channels and sizes come from the classes and
    /// `[io]`, see [`Resolver::model`]).
    fn architecture(
        &self,
        rm: &crate::raw_config::RawModel,
        from_preset: Option<&Architecture>,
    ) -> Result<ArchChoice, ConfigError> {
        let num_types = rm
            .num_types
            .as_ref()
            .map(|v| self.positive(v, "model.num_types"))
            .transpose()?;
        let num_layers = rm
            .num_layers
            .as_ref()
            .map(|v| self.positive(v, "model.num_layers"))
            .transpose()?;
        let heads = match &rm.heads {
            Some(h) => Some(
                h.get_ref()
                    .iter()
                    .map(|name| {
                        name.parse::<HeadKind>()
                            .map_err(|e| self.err(h, "model.heads", e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        #[derive(Clone, Copy)]
        enum Kind {
            Fast,
            Original,
            Plus,
            Script,
        }
        let kind = match &rm.architecture {
            Some(a) => self.choice(
                a,
                "model.architecture",
                &[
                    ("hovernet-fast", Kind::Fast),
                    ("hovernet-original", Kind::Original),
                    ("hovernetplus", Kind::Plus),
                    ("torchscript", Kind::Script),
                ],
            )?,
            None => match from_preset {
                Some(Architecture::HoVerNetFast { .. } | Architecture::HoVerNetFastSlim { .. }) => {
                    Kind::Fast
                }
                Some(Architecture::HoVerNetOriginal { .. }) => Kind::Original,
                Some(Architecture::HoVerNetPlus { .. }) => Kind::Plus,
                Some(Architecture::TorchScript { .. }) => Kind::Script,
                None => {
                    return Err(self
                        .missing("model.architecture", "give a `preset` or an `architecture`")
                        .with_hint(format!(
                            "architectures: hovernet-fast, hovernet-original, hovernetplus, torchscript; presets: {}",
                            PRESET_NAMES.join(", ")
                        )));
                }
            },
        };
        let preset_types = from_preset.and_then(Architecture::num_types);
        let preset_layers = match from_preset {
            Some(Architecture::HoVerNetPlus { num_layers, .. }) => Some(*num_layers),
            _ => None,
        };
        let width_divisor = match &rm.width_divisor {
            None => from_preset.map_or(1, Architecture::width_divisor),
            Some(w) => {
                let v = self.positive(w, "model.width_divisor")?;
                if !matches!(kind, Kind::Fast) {
                    return Err(self.err(
                        w,
                        "model.width_divisor",
                        "applies to architecture = \"hovernet-fast\" only",
                    ));
                }
                if !Architecture::WIDTH_DIVISORS.contains(&v) {
                    let allowed: Vec<String> = Architecture::WIDTH_DIVISORS
                        .iter()
                        .map(u32::to_string)
                        .collect();
                    let (last, rest) = allowed.split_last().expect("four divisors");
                    return Err(self.err(
                        w,
                        "model.width_divisor",
                        format!("must be {} or {last}", rest.join(", ")),
                    ));
                }
                v
            }
        };
        let arch = match kind {
            Kind::Fast => Architecture::hovernet_fast(num_types.or(preset_types), width_divisor),
            Kind::Original => Architecture::HoVerNetOriginal {
                num_types: num_types.or(preset_types),
            },
            Kind::Plus => Architecture::HoVerNetPlus {
                num_types: num_types.or(preset_types).ok_or_else(|| {
                    self.missing("model.num_types", "hovernetplus needs num_types")
                })?,
                num_layers: num_layers.or(preset_layers).ok_or_else(|| {
                    self.missing("model.num_layers", "hovernetplus needs num_layers")
                })?,
            },
            Kind::Script => {
                let heads = heads.clone().ok_or_else(|| {
                    self.missing("model.heads", "a torchscript model must declare its heads, e.g. heads = [\"np\", \"hv\", \"tp\"]")
                })?;
                let h = rm.heads.as_ref().expect("torchscript heads were given");
                if !heads.contains(&HeadKind::Np) || !heads.contains(&HeadKind::Hv) {
                    return Err(self.err(
                        h,
                        "model.heads",
                        "the head contract needs at least np and hv",
                    ));
                }
                let twice = (1..heads.len()).find(|&i| heads[..i].contains(&heads[i]));
                if let Some(i) = twice {
                    return Err(self.err(
                        h,
                        "model.heads",
                        format!("head {} is declared twice", heads[i]),
                    ));
                }
                return Ok(ArchChoice::TorchScript(heads));
            }
        };
        if let Some(h) = &rm.heads {
            return Err(self.err(
                h,
                "model.heads",
                "heads are declared only for architecture = \"torchscript\"",
            ));
        }
        arch.validate()
            .map_err(|e| self.missing("model.architecture", e.to_string()))?;
        Ok(ArchChoice::Native(arch))
    }

    fn check_shapes(
        &self,
        io: &ModelIo,
        ri: &crate::raw_config::RawIo,
        arch: &ArchChoice,
    ) -> Result<(), ConfigError> {
        let at = |v: &Option<Spanned<RawShape>>, key: &str, msg: String| match v {
            Some(s) => self.err(s, key, msg),
            None => self.missing(key, msg),
        };
        let (i, o, s, t) = (io.patch_input, io.patch_output, io.stride, io.tile_shape);
        if o.height > i.height || o.width > i.width {
            return Err(at(
                &ri.patch_output,
                "io.patch_output",
                format!("the output patch ({o}) cannot be larger than the input patch ({i})"),
            ));
        }
        if s.height > o.height || s.width > o.width {
            return Err(at(
                &ri.stride,
                "io.stride",
                format!("a stride of {s} is larger than the output patch ({o}): pixels between patches would never be predicted"),
            )
            .with_hint(format!("use a stride between 1 and {}", o.height.min(o.width))));
        }
        if t.height < o.height || t.width < o.width {
            return Err(at(
                &ri.tile_shape,
                "io.tile_shape",
                format!("the post-processing tile ({t}) must hold at least one output patch ({o})"),
            ));
        }
        let eff = io.effective_tile();
        if 2 * u64::from(io.margin) > eff.height.min(eff.width) {
            let e = match &ri.margin {
                Some(m) => self.err(m, "io.margin", String::new()),
                None => self.missing("io.margin", String::new()),
            };
            let msg = format!(
                "a margin of {} needs tiles of at least {} px, but the tile is {} (tile_shape rounded down to a multiple of the output patch)",
                io.margin,
                2 * io.margin,
                eff
            );
            return Err(match e {
                ConfigError::Invalid {
                    path,
                    location,
                    key,
                    hint,
                    ..
                } => ConfigError::Invalid {
                    path,
                    location,
                    key,
                    message: msg,
                    hint,
                },
                other => other,
            });
        }
        if let ArchChoice::Native(arch) = arch
            && let Some((nat_in, nat_out)) = arch.native_patch_sizes()
        {
            if i != Size2::square(u64::from(nat_in)) {
                return Err(at(
                    &ri.patch_input,
                    "io.patch_input",
                    format!(
                        "{} takes {nat_in} x {nat_in} input patches, not {i}",
                        arch.name()
                    ),
                ));
            }
            if o != Size2::square(u64::from(nat_out)) {
                return Err(at(
                    &ri.patch_output,
                    "io.patch_output",
                    format!(
                        "{} predicts {nat_out} x {nat_out} output patches, not {o}",
                        arch.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[model]` apart from the architecture's kind, and the architecture completed: a
    /// TorchScript module's head channels come from the class names, its sizes from `[io]`.
    fn model(
        &self,
        rm: crate::raw_config::RawModel,
        preset: Option<&crate::presets::Preset>,
        choice: ArchChoice,
        io: &ModelIo,
    ) -> Result<ModelConfig, ConfigError> {
        let device = match &rm.device {
            Some(d) => d
                .get_ref()
                .parse::<Device>()
                .map_err(|e| self.err(d, "model.device", e.to_string()))?,
            None => Device::Auto,
        };
        let precision = match &rm.precision {
            Some(p) => p.get_ref().parse::<Precision>().map_err(|e| {
                let err = self.err(p, "model.precision", e.to_string());
                match closest(p.get_ref(), Precision::NAMES) {
                    Some(c) => err.with_hint(format!("did you mean `{c}`?")),
                    None => err,
                }
            })?,
            None => Precision::Fp32,
        };
        // bf16 runs on CPUs too (oneDNN); fp16 does not: libtorch's CPU fp16 convolutions
        // measured slower than fp32 (mtseg-infer's benches/RESULTS.md).
        if precision == Precision::Fp16 && device == Device::Cpu {
            let p = rm
                .precision
                .as_ref()
                .expect("non-default precision was given");
            return Err(self.err(
                p,
                "model.precision",
                "fp16 runs only on CUDA (on a CPU it is slower than fp32); \
                 use \"bf16\" or \"fp32\" with device = \"cpu\"",
            ));
        }
        let batch_size = match &rm.batch_size {
            Some(b) => self.positive(b, "model.batch_size")?,
            None => 8,
        };
        let batch_size = NonZeroU32::new(batch_size).expect("positive() returns > 0");
        let nuclei_classes = match &rm.nuclei_classes {
            Some(c) => c.get_ref().clone(),
            None => preset
                .map(|p| p.nuclei_classes.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        };
        let layer_classes = match &rm.layer_classes {
            Some(c) => c.get_ref().clone(),
            None => preset
                .map(|p| p.layer_classes.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        };
        let architecture = match choice {
            ArchChoice::Native(arch) => {
                let layers = arch
                    .heads()
                    .iter()
                    .find(|h| h.kind == HeadKind::Ls)
                    .map(|h| h.raw_channels);
                if let (Some(n), Some(c)) = (arch.num_types(), &rm.nuclei_classes)
                    && c.get_ref().len() != n as usize
                {
                    return Err(self.err(
                        c,
                        "model.nuclei_classes",
                        format!(
                            "{} names for a model with {n} nucleus classes",
                            c.get_ref().len()
                        ),
                    ));
                }
                if let (Some(n), Some(c)) = (layers, &rm.layer_classes)
                    && c.get_ref().len() != n as usize
                {
                    return Err(self.err(
                        c,
                        "model.layer_classes",
                        format!(
                            "{} names for a model with {n} layer classes",
                            c.get_ref().len()
                        ),
                    ));
                }
                arch
            }
            ArchChoice::TorchScript(kinds) => {
                let h = rm.heads.as_ref().expect("torchscript heads were given");
                let mut heads = Vec::with_capacity(kinds.len());
                for kind in kinds {
                    let classes = match kind {
                        HeadKind::Np | HeadKind::Hv => None,
                        HeadKind::Tp => Some((nuclei_classes.len(), "nuclei_classes")),
                        HeadKind::Ls => Some((layer_classes.len(), "layer_classes")),
                    };
                    let raw_channels = match classes {
                        None => 2,
                        Some((n, key)) => {
                            u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                                self.err(
                                    h,
                                    &format!("model.{key}"),
                                    format!(
                                        "architecture = \"torchscript\" with a `{kind}` head needs \
                                     `{key}` (the class names, background first) to know the \
                                     head's channel count"
                                    ),
                                )
                            })?
                        }
                    };
                    heads.push(HeadSpec::new(kind, raw_channels));
                }
                // Shapes are bounded by `shape()` (at most 2^20 px), so they fit a u32.
                let side = |v: u64| u32::try_from(v).expect("shape() bounds sides to 2^20");
                Architecture::TorchScript {
                    heads,
                    input_size: side(io.patch_input.width),
                    output_size: side(io.patch_output.width),
                }
            }
        };
        architecture
            .validate()
            .map_err(|e| self.missing("model.architecture", e.to_string()))?;
        Ok(ModelConfig {
            preset: preset.map(|p| p.name.to_string()),
            architecture,
            weights: rm.weights.map(|w| PathBuf::from(w.into_inner())),
            device,
            batch_size,
            precision,
            nuclei_classes,
            layer_classes,
        })
    }

    fn input(&self, ri: crate::raw_config::RawInput) -> Result<InputConfig, ConfigError> {
        let mode = match &ri.mode {
            Some(m) => self.choice(
                m,
                "input.mode",
                &[("wsi", InputMode::Wsi), ("patch", InputMode::Patch)],
            )?,
            None => InputMode::Wsi,
        };
        let mut slides = Vec::new();
        if let Some(list) = &ri.slides {
            for entry in list.get_ref() {
                let found = self.expand(entry, list, "input.slides")?;
                slides.extend(found.into_iter().map(SlideInput::new));
            }
        }
        if let Some(m) = &ri.manifest {
            let manifest = PathBuf::from(m.get_ref());
            let text = std::fs::read_to_string(&manifest).map_err(|e| {
                self.err(
                    m,
                    "input.manifest",
                    format!("cannot read manifest {}: {e}", manifest.display()),
                )
            })?;
            slides.extend(parse_manifest(&manifest, &text)?);
        }
        if ri.slides.is_none() && ri.manifest.is_none() {
            return Err(self.missing(
                "input.slides",
                "no input: give `slides = [...]` or `manifest = \"file\"` in [input]",
            ));
        }
        if slides.is_empty() {
            let e = match (&ri.slides, &ri.manifest) {
                (Some(s), _) => self.err(s, "input.slides", "the list of inputs is empty"),
                (None, Some(m)) => self.err(m, "input.manifest", "the manifest lists no inputs"),
                (None, None) => unreachable!("checked above"),
            };
            return Err(e);
        }
        let mask = match ri.mask.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("auto") => MaskSpec::Auto,
            Some("none") => MaskSpec::None,
            Some(p) => MaskSpec::Path(p.to_string()),
        };
        let mask_rule = match &ri.mask_rule {
            Some(r) => self.choice(
                r,
                "input.mask_rule",
                &[
                    ("overlap", MaskRuleChoice::Overlap),
                    ("tiatoolbox", MaskRuleChoice::TiaToolbox),
                ],
            )?,
            None => MaskRuleChoice::Overlap,
        };
        let mpp = match &ri.mpp {
            Some(v) => {
                let x = *v.get_ref();
                if !(x.is_finite() && x > 0.0) {
                    return Err(self.err(
                        v,
                        "input.mpp",
                        format!("must be a positive number of microns per pixel, got {x}"),
                    ));
                }
                Some(x)
            }
            None => None,
        };
        let backend = match &ri.backend {
            Some(b) => self.choice(
                b,
                "input.backend",
                &[
                    ("auto", BackendChoice::Auto),
                    ("openslide", BackendChoice::OpenSlide),
                    ("tiff", BackendChoice::Tiff),
                    ("image", BackendChoice::Image),
                ],
            )?,
            None => BackendChoice::Auto,
        };
        let shard = ri
            .shard
            .as_ref()
            .map(|t| {
                t.get_ref()
                    .parse::<Shard>()
                    .map_err(|e| self.err(t, "input.shard", e.to_string()))
            })
            .transpose()?;
        Ok(InputConfig {
            mode,
            slides,
            mask,
            mask_rule,
            mpp,
            backend,
            shard,
        })
    }

    fn expand(
        &self,
        entry: &str,
        at: &Spanned<Vec<String>>,
        key: &str,
    ) -> Result<Vec<PathBuf>, ConfigError> {
        if !is_glob(entry) {
            return Ok(vec![PathBuf::from(entry)]);
        }
        let found = glob_paths(entry).map_err(|e| self.err(at, key, e))?;
        if found.is_empty() {
            return Err(self.err(at, key, format!("no file matches `{entry}`")));
        }
        Ok(found)
    }

    fn output(&self, ro: crate::raw_config::RawOutput) -> Result<OutputConfig, ConfigError> {
        let formats = match &ro.formats {
            Some(f) => {
                let mut out = Vec::new();
                for name in f.get_ref() {
                    let spanned = Spanned::new(f.span(), name.clone());
                    let fmt = self.choice(
                        &spanned,
                        "output.formats",
                        &[
                            ("annotationstore", OutputFormat::AnnotationStore),
                            ("qupath", OutputFormat::QuPath),
                            ("zarr", OutputFormat::Zarr),
                        ],
                    )?;
                    if !out.contains(&fmt) {
                        out.push(fmt);
                    }
                }
                if out.is_empty() {
                    return Err(self.err(
                        f,
                        "output.formats",
                        "give at least one of annotationstore, qupath, zarr",
                    ));
                }
                out
            }
            None => vec![OutputFormat::AnnotationStore, OutputFormat::QuPath],
        };
        let save_predictions = ro.save_predictions.unwrap_or(false);
        let save_probabilities = ro.save_probabilities.unwrap_or(false);
        if (save_predictions || save_probabilities) && !formats.contains(&OutputFormat::Zarr) {
            return Err(self
                .missing(
                    "output.formats",
                    "save_predictions / save_probabilities write into the Zarr output",
                )
                .with_hint("add \"zarr\" to formats"));
        }
        Ok(OutputConfig {
            dir: PathBuf::from(
                ro.dir
                    .map_or_else(|| "results".to_string(), |d| d.into_inner()),
            ),
            formats,
            overwrite: ro.overwrite.unwrap_or(false),
            save_predictions,
            save_probabilities,
            gzip_geojson: ro.gzip_geojson.unwrap_or(false),
            overlay: ro.overlay.unwrap_or(false),
        })
    }

    fn pipeline(&self, rp: crate::raw_config::RawPipeline) -> Result<PipelineConfig, ConfigError> {
        let memory_limit = match &rp.memory_limit {
            Some(m) => m
                .get_ref()
                .parse::<MemoryLimit>()
                .map_err(|e| self.err(m, "pipeline.memory_limit", e.to_string()))?,
            None => MemoryLimit::PercentOfRam(50.0),
        };
        let queue_capacity = match &rp.queue_capacity {
            Some(q) => self.positive(q, "pipeline.queue_capacity")?,
            None => 8,
        };
        let checkpoint_every = match &rp.checkpoint_every_s {
            Some(v) => {
                let s = *v.get_ref();
                let key = "pipeline.checkpoint_every_s";
                if s.is_nan() || s < 0.0 {
                    return Err(self.err(
                        v,
                        key,
                        format!("must be zero or a positive number of seconds, got {s}"),
                    ));
                }
                Duration::try_from_secs_f64(s)
                    .map_err(|_| self.err(v, key, format!("{s} seconds is too long")))?
            }
            None => Duration::from_secs(10),
        };
        Ok(PipelineConfig {
            memory_limit,
            queue_capacity: NonZeroU32::new(queue_capacity).expect("positive() returns > 0"),
            threads: rp
                .threads
                .as_ref()
                .map(|t| self.non_negative(t, "pipeline.threads"))
                .transpose()?
                .unwrap_or(0),
            read_workers: rp
                .read_workers
                .as_ref()
                .map(|t| self.non_negative(t, "pipeline.read_workers"))
                .transpose()?
                .unwrap_or(0),
            workers: rp
                .workers
                .as_ref()
                .map(|t| self.non_negative(t, "pipeline.workers"))
                .transpose()?
                .unwrap_or(0),
            checkpoint: rp.checkpoint.unwrap_or(true),
            checkpoint_every,
        })
    }
}

/// Whether a slide entry is a glob pattern (it holds `*`, `?` or `[`).
pub(crate) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The files `pattern` matches, sorted.
pub(crate) fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let paths = glob::glob(pattern).map_err(|e| format!("bad glob pattern `{pattern}`: {e}"))?;
    let mut out: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}
