//! A picture of the result: nucleus contours, coloured by class (the colours of the GeoJSON),
//! drawn over a region of the slide read at the processing resolution, written as a PNG (under a
//! temporary name, renamed when complete).

use std::path::Path;

use mtseg_instmerge::MergedItem;
use mtseg_postproc::NucleusInstance;

use crate::atomic_file::TempOutput;
use crate::class_colours::class_colour;
use crate::export_errors::ExportError;

/// The slide pixels under an overlay: RGB, row-major, `width * height * 3` bytes, whose top-left
/// pixel is `origin` in processing-resolution slide pixels (the frame of the nuclei).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayBase {
    /// Top-left `[x, y]` in the frame of the nuclei.
    pub origin: [i64; 2],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB bytes.
    pub rgb: Vec<u8>,
}

impl OverlayBase {
    /// Whether a nucleus's box (`[x0, y0, x1, y1]`, exclusive end) meets the region.
    pub fn meets(&self, bbox: [i32; 4]) -> bool {
        let [x0, y0] = self.origin;
        i64::from(bbox[2]) > x0
            && i64::from(bbox[0]) < x0 + self.width as i64
            && i64::from(bbox[3]) > y0
            && i64::from(bbox[1]) < y0 + self.height as i64
    }
}

/// Draws every nucleus contour (closed, 2 px wide) over `base` in its class colour and writes the
/// PNG to `path`.
///
/// # Errors
/// [`ExportError::OutputExists`] when `path` exists and `overwrite` is off; I/O and encoding
/// errors naming the file; [`ExportError::InvalidSpec`] when `base.rgb` has the wrong length.
pub fn write_overlay_png(
    path: &Path,
    base: &OverlayBase,
    nuclei: &[MergedItem<NucleusInstance>],
    classes: &[String],
    overwrite: bool,
) -> Result<(), ExportError> {
    if base.rgb.len() != base.width * base.height * 3 {
        return Err(ExportError::InvalidSpec {
            slide: path.to_path_buf(),
            reason: format!(
                "overlay base of {} x {} px needs {} RGB bytes, got {}",
                base.width,
                base.height,
                base.width * base.height * 3,
                base.rgb.len()
            ),
        });
    }
    if path.exists() && !overwrite {
        return Err(ExportError::OutputExists {
            path: path.to_path_buf(),
        });
    }
    let mut img = base.rgb.clone();
    let (w, h) = (base.width as i64, base.height as i64);
    let mut plot = |x: i64, y: i64, c: [u8; 3]| {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x + dx, y + dy);
            if (0..w).contains(&px) && (0..h).contains(&py) {
                let i = ((py * w + px) * 3) as usize;
                img[i..i + 3].copy_from_slice(&c);
            }
        }
    };
    for n in nuclei
        .iter()
        .map(|m| &m.item)
        .filter(|n| base.meets(n.bbox))
    {
        let colour = n
            .type_id
            .map_or([255, 255, 0], |t| class_colour(t, classes.len()));
        let pts = &n.contour;
        for k in 0..pts.len() {
            let (a, b) = (pts[k], pts[(k + 1) % pts.len()]);
            let (ax, ay) = (
                i64::from(a[0]) - base.origin[0],
                i64::from(a[1]) - base.origin[1],
            );
            let (bx, by) = (
                i64::from(b[0]) - base.origin[0],
                i64::from(b[1]) - base.origin[1],
            );
            let steps = (bx - ax).abs().max((by - ay).abs()).max(1);
            for i in 0..=steps {
                plot(
                    ax + (bx - ax) * i / steps,
                    ay + (by - ay) * i / steps,
                    colour,
                );
            }
        }
    }
    let mut temp = TempOutput::new(path)?;
    image::save_buffer_with_format(
        temp.temp_path(),
        &img,
        base.width as u32,
        base.height as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| ExportError::Io {
        action: "write the overlay PNG",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    temp.commit(overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contours_are_drawn_in_class_colours_and_the_png_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.png");
        let base = OverlayBase {
            origin: [100, 200],
            width: 20,
            height: 10,
            rgb: vec![255; 20 * 10 * 3],
        };
        let n = MergedItem {
            id: 1,
            tile_index: 0,
            item: NucleusInstance {
                label: 1,
                contour: vec![[102, 202], [102, 206], [108, 206], [108, 202]],
                bbox: [102, 202, 109, 207],
                centroid: [105.0, 204.0],
                type_id: Some(1),
                type_prob: Some(1.0),
            },
        };
        let classes = vec!["bg".to_string(), "a".to_string()];
        write_overlay_png(&path, &base, &[n], &classes, false).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (20, 10));
        let c = class_colour(1, 2);
        assert_eq!(img.get_pixel(2, 2).0, c);
        assert_eq!(img.get_pixel(5, 4).0, [255, 255, 255], "inside stays");
        assert!(write_overlay_png(&path, &base, &[], &classes, false).is_err());
        let bad = OverlayBase {
            rgb: vec![0; 5],
            ..base
        };
        assert!(write_overlay_png(&path, &bad, &[], &classes, true).is_err());
    }
}
