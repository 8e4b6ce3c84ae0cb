//! Choosing a backend and opening a slide.

use std::path::Path;

use crate::image_backend::ImageSlide;
use crate::slide_errors::OpenError;
use crate::slide_reader::SlideReader;
use crate::tiff_backend::TiffSlide;

/// Which backend reads a slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// OpenSlide when it recognises the file (and is compiled in), else the TIFF backend for
    /// TIFF files, else the plain-image backend.
    #[default]
    Auto,
    /// OpenSlide (feature `openslide`).
    OpenSlide,
    /// The pure-Rust TIFF backend.
    Tiff,
    /// The plain-image backend (whole image decoded into memory).
    Image,
}

/// How to open a slide.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpenOptions {
    /// The backend.
    pub backend: Backend,
    /// Microns per pixel to use when the file carries none.
    pub fallback_mpp: Option<f64>,
}

/// Opens `path` with the backend of `options`.
///
/// Errors: `Io` (missing or unreadable), `Empty`, `Unsupported` (no backend recognises it, e.g.
/// a text file named `.svs`), `Corrupt` (recognised but damaged).
pub fn open_slide(path: &Path, options: OpenOptions) -> Result<Box<dyn SlideReader>, OpenError> {
    let meta = std::fs::metadata(path).map_err(|e| OpenError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(OpenError::Io {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(OpenError::Empty {
            path: path.to_path_buf(),
        });
    }
    let reader: Box<dyn SlideReader> = match options.backend {
        Backend::OpenSlide => open_openslide(path)?,
        Backend::Tiff => Box::new(TiffSlide::open(path)?),
        Backend::Image => Box::new(ImageSlide::open(path, options.fallback_mpp)?),
        Backend::Auto => open_auto(path, options.fallback_mpp)?,
    };
    Ok(with_fallback_mpp(reader, options.fallback_mpp))
}

fn open_auto(path: &Path, mpp: Option<f64>) -> Result<Box<dyn SlideReader>, OpenError> {
    #[cfg(feature = "openslide")]
    if crate::openslide_backend::detect_vendor(path).is_some() {
        return open_openslide(path);
    }
    let mut reasons = Vec::new();
    match TiffSlide::open(path) {
        Ok(s) => return Ok(Box::new(s)),
        Err(OpenError::Unsupported { reason, .. }) => reasons.push(format!("TIFF: {reason}")),
        Err(e) => return Err(e),
    }
    match ImageSlide::open(path, mpp) {
        Ok(s) => return Ok(Box::new(s)),
        Err(OpenError::Unsupported { reason, .. }) => reasons.push(format!("image: {reason}")),
        Err(e) => return Err(e),
    }
    #[cfg(feature = "openslide")]
    reasons.insert(0, "OpenSlide: does not recognise it".into());
    Err(OpenError::Unsupported {
        path: path.to_path_buf(),
        reason: reasons.join("; "),
    })
}

#[cfg(feature = "openslide")]
fn open_openslide(path: &Path) -> Result<Box<dyn SlideReader>, OpenError> {
    Ok(Box::new(crate::openslide_backend::OpenSlideSlide::open(
        path,
    )?))
}

#[cfg(not(feature = "openslide"))]
fn open_openslide(path: &Path) -> Result<Box<dyn SlideReader>, OpenError> {
    Err(OpenError::BackendUnavailable {
        path: path.to_path_buf(),
        backend: "openslide",
        reason: "mtseg-slide was built without its `openslide` feature".into(),
    })
}

/// Gives a slide without mpp metadata the fallback mpp (and the objective power estimated from
/// it only for pyramid formats, as TIAToolbox).
fn with_fallback_mpp(reader: Box<dyn SlideReader>, mpp: Option<f64>) -> Box<dyn SlideReader> {
    match mpp {
        Some(m) if reader.info().mpp.is_none() => Box::new(WithMpp::new(reader, m)),
        _ => reader,
    }
}

/// A reader whose metadata is patched with a given resolution.
struct WithMpp {
    inner: Box<dyn SlideReader>,
    info: crate::resolution::SlideInfo,
}

impl WithMpp {
    fn new(inner: Box<dyn SlideReader>, mpp: f64) -> Self {
        let mut info = inner.info().clone();
        info.mpp = Some([mpp, mpp]);
        Self { inner, info }
    }
}

impl SlideReader for WithMpp {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn info(&self) -> &crate::resolution::SlideInfo {
        &self.info
    }

    fn read_level_inside(
        &self,
        level: usize,
        x: u64,
        y: u64,
        w: u32,
        h: u32,
    ) -> Result<image::RgbImage, crate::ReadError> {
        self.inner.read_level_inside(level, x, y, w, h)
    }
}
