//! The vocabulary the stages of mtseg-pipeline share: each concept below is defined here once,
//! with its one grammar, and every crate that names it uses this definition.
//!
//! # Where it sits
//!
//! Below every stage crate and depending on none of them:
//!
//! ```text
//!   io-config --parses the TOML into--> mtseg-types <--uses-- tiling, infer, stitch, instmerge
//!   cli --parses --device into--------> mtseg-types           pipeline, cli
//! ```
//! It does no I/O and links no libtorch: values come in as strings or numbers and go out as
//! plain data. Turning a [`MemoryLimit`] percentage into bytes takes the usable RAM as an
//! argument (the `stitch` crate measures it); turning a [`Device`] into a libtorch device is
//! `infer`'s work.
//!
//! # Brief overview
//!
//! - [`Size2`]: a (width, height) pair of pixel counts, the one axis order of every public call
//!   that takes a 2-D size.
//! - [`MemoryLimit`]: `"512MiB"`, `"2GB"`, `"1.5 GiB"`, `"1073741824"` or `"25%"` of the usable
//!   RAM; zero is refused, fractional bytes round to the nearest byte.
//! - [`Device`] (`cpu`, `auto`, `cuda`, `cuda:N`) and [`Precision`] (`fp32`, `bf16`, `fp16`).
//! - [`HeadKind`], [`HeadSpec`], [`Architecture`]: the heads a model returns, and the network
//!   (HoVer-Net fast / original / plus, or a TorchScript module) with its patch sizes and width
//!   divisor.
//! - [`PatchBatch`] (with [`PatchBox`]): the patches the reader hands the model, as it is.
//!
//! # Example
//!
//! ```
//! use mtseg_types::{Architecture, Device, HeadKind, MemoryLimit, Size2};
//!
//! let device: Device = "cuda:1".parse()?;
//! assert_eq!(device, Device::Cuda(1));
//! let limit: MemoryLimit = "1.5 GiB".parse()?;
//! assert_eq!(limit.to_bytes(|| unreachable!("no RAM probe for a byte size")), 3 << 29);
//! assert_eq!("25%".parse::<MemoryLimit>()?.to_bytes(|| 8 << 30), 2 << 30);
//! assert!("0".parse::<MemoryLimit>().is_err());
//!
//! let arch = Architecture::hovernet_fast(Some(6), 8);
//! assert_eq!(arch.patch_sizes(), (Size2::square(256), Size2::square(164)));
//! let heads: Vec<HeadKind> = arch.heads().iter().map(|h| h.kind).collect();
//! assert_eq!(heads, [HeadKind::Np, HeadKind::Hv, HeadKind::Tp]);
//! # Ok::<(), mtseg_types::ParseError>(())
//! ```
//!
//! # Choices a reader might question
//!
//! - Every grammar is ASCII case-insensitive and ignores surrounding spaces (`"CPU"`,
//!   `" 2 GiB "`), in the config and on the command line alike: one parser serves both.
//! - A memory limit of zero bytes (`"0"`, `"0MiB"`, `"0.4"`, which rounds to 0) is an error, not
//!   "no limit": a run cannot hold any buffer in zero bytes, and a silent "unlimited" would hide
//!   a typo. There is no "unlimited" in the grammar; code that wants no limit (tests, tools) says
//!   [`MemoryLimit::Unlimited`].
#![forbid(unsafe_code)]

mod architecture;
mod device;
mod heads;
mod memory_limit;
mod parse_error;
mod patch_batch;
mod size;

pub use architecture::{Architecture, InvalidArchitecture};
pub use device::{Device, Precision};
pub use heads::{HeadKind, HeadSpec};
pub use memory_limit::MemoryLimit;
pub use parse_error::ParseError;
pub use patch_batch::{PatchBatch, PatchBox};
pub use size::Size2;
