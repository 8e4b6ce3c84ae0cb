//! The pure-Rust TIFF backend: tiled or stripped pyramids (Aperio SVS, libvips/generic pyramid
//! TIFF, BigTIFF) with JPEG, Deflate, LZW or no compression, 8-bit RGB/RGBA/grey.
//!
//! JPEG chunks are read straight from the file (with the `JPEGTables` spliced in) and decoded to
//! RGB by zune-jpeg, which detects whether the stream holds RGB or YCbCr as libjpeg does; other
//! compressions go through the `tiff` crate. Decoded chunks are kept in a small shared cache, so
//! neighbouring patches do not decode the same tile twice.
//!
//! Pyramid levels: IFD 0, then every later IFD of the same chunk kind (tiled or stripped) that is
//! smaller and has the same aspect ratio (within 2 %); Aperio's thumbnail, label and macro images
//! are stripped or of another shape, so they are not levels.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use rayon::prelude::*;
use tiff::ColorType;
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::{CompressionMethod, PlanarConfiguration, Tag};

use crate::region_union;
use crate::resolution::{Resolution, SlideInfo, levels_from_sizes};
use crate::slide_errors::{OpenError, ReadError};
use crate::slide_reader::{Interpolation, SlideReader};

/// Largest accepted image side (4 Mpx): real slides are at most a few hundred thousand pixels wide.
const MAX_SIDE: u64 = 1 << 22;
/// Largest accepted tile or strip (64 Mpx).
const MAX_CHUNK_PIXELS: u64 = 1 << 26;
/// Bytes of decoded chunks kept in the cache.
const CACHE_BYTES: usize = 96 << 20;

/// One pyramid level: an IFD and its chunk layout.
#[derive(Debug)]
struct Level {
    ifd: usize,
    width: u64,
    height: u64,
    chunk_w: u64,
    chunk_h: u64,
    chunks_across: u64,
    tiled: bool,
    jpeg: bool,
    /// The TIFF says the JPEG data is YCbCr (else RGB, which is decoded without conversion).
    ycbcr: bool,
    jpeg_tables: Option<Vec<u8>>,
    offsets: Vec<u64>,
    byte_counts: Vec<u64>,
}

/// A decoded chunk: RGB bytes of `w x h` pixels (the chunk's full size, edge chunks included).
struct Chunk {
    w: u64,
    h: u64,
    rgb: Vec<u8>,
}

#[derive(Default)]
struct ChunkCache {
    map: HashMap<(usize, u64), Arc<Chunk>>,
    order: VecDeque<(usize, u64)>,
    bytes: usize,
}

impl ChunkCache {
    fn get(&self, key: (usize, u64)) -> Option<Arc<Chunk>> {
        self.map.get(&key).cloned()
    }

    fn put(&mut self, key: (usize, u64), chunk: Arc<Chunk>) {
        if self.map.contains_key(&key) {
            return;
        }
        self.bytes += chunk.rgb.len();
        self.map.insert(key, chunk);
        self.order.push_back(key);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.map.remove(&old) {
                self.bytes -= c.rgb.len();
            }
        }
    }
}

type TiffDecoder = Decoder<BufReader<File>>;

/// A TIFF slide read with the `tiff` crate (no C library).
pub struct TiffSlide {
    path: PathBuf,
    file: File,
    info: SlideInfo,
    levels: Vec<Level>,
    cache: Mutex<ChunkCache>,
    decoders: Mutex<Vec<(usize, TiffDecoder)>>,
    /// Chunks decoded so far (tests check that reads decode each tile once).
    decoded: AtomicU64,
}

impl std::fmt::Debug for TiffSlide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffSlide")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.ifd_value_size = 64 << 20; // offset tables of big slides
    l.decoding_buffer_size = 512 << 20;
    l
}

fn open_decoder(path: &Path) -> Result<TiffDecoder, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    Decoder::new(BufReader::new(file))
        .map(|d| d.with_limits(limits()))
        .map_err(|e| e.to_string())
}

fn tag_u64(d: &mut TiffDecoder, tag: Tag) -> Result<Option<u64>, String> {
    d.find_tag_unsigned::<u64>(tag)
        .map_err(|e| format!("tag {tag:?}: {e}"))
}

fn tag_f64(d: &mut TiffDecoder, tag: Tag) -> Option<f64> {
    match d.find_tag(tag).ok()?? {
        tiff::decoder::ifd::Value::Rational(n, den) if den != 0 => {
            Some(f64::from(n) / f64::from(den))
        }
        v => v.into_f64().ok(),
    }
}

/// Microns per pixel and objective power from an Aperio description ("MPP = 0.4990|AppMag = 20").
fn aperio_metadata(description: &str) -> (Option<f64>, Option<f64>) {
    let mut mpp = None;
    let mut mag = None;
    for field in description.split('|') {
        if let Some((k, v)) = field.split_once('=') {
            match k.trim() {
                "MPP" => mpp = v.trim().parse().ok(),
                "AppMag" => mag = v.trim().parse().ok(),
                _ => {}
            }
        }
    }
    (mpp, mag)
}

impl TiffSlide {
    /// Opens a TIFF slide; `Unsupported` if it is not a TIFF, `Corrupt` if its structure is
    /// inconsistent (absurd dimensions, missing or short chunk tables, unsupported sample layout).
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let corrupt = |reason: String| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| OpenError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut magic = [0u8; 4];
        let n = (&file).read(&mut magic).unwrap_or(0);
        if n < 4
            || !(magic == *b"II*\0"
                || magic == *b"MM\0*"
                || magic == *b"II+\0"
                || magic == *b"MM\0+")
        {
            return Err(OpenError::Unsupported {
                path: path.to_path_buf(),
                reason: "not a TIFF file (no TIFF header)".into(),
            });
        }
        let mut d = open_decoder(path).map_err(|e| {
            let hint = if e.contains("fill whole buffer") {
                " (the file ends early: truncated?)"
            } else {
                ""
            };
            corrupt(format!("cannot parse the TIFF structure: {e}{hint}"))
        })?;
        let mut levels: Vec<Level> = Vec::new();
        let mut mpp: Option<[f64; 2]> = None;
        let mut power = None;
        let mut format = "tiff (generic)".to_string();
        let mut ifd = 0usize;
        loop {
            if ifd > 0 {
                if !d.more_images() {
                    break;
                }
                if d.next_image().is_err() {
                    // A broken trailing IFD (e.g. a truncated file) ends the pyramid.
                    tracing::warn!(path = %path.display(), ifd, "stopping at an unreadable IFD");
                    break;
                }
            }
            let level = match Self::read_level_meta(&mut d, ifd) {
                Ok(l) => l,
                Err(e) if ifd == 0 => return Err(corrupt(format!("IFD 0: {e}"))),
                Err(e) => {
                    tracing::debug!(ifd, error = %e, "IFD skipped");
                    ifd += 1;
                    continue;
                }
            };
            if ifd == 0 {
                let desc = d
                    .find_tag(Tag::ImageDescription)
                    .ok()
                    .flatten()
                    .and_then(|v| v.into_string().ok());
                if let Some(desc) = desc.filter(|s| s.starts_with("Aperio")) {
                    format = "tiff (aperio svs)".into();
                    let (m, p) = aperio_metadata(&desc);
                    mpp = m.map(|m| [m, m]);
                    power = p;
                }
                if mpp.is_none() {
                    let unit = tag_u64(&mut d, Tag::ResolutionUnit)
                        .ok()
                        .flatten()
                        .unwrap_or(2);
                    if let Some(xres) = tag_f64(&mut d, Tag::XResolution).filter(|v| *v > 0.0) {
                        let yres = tag_f64(&mut d, Tag::YResolution)
                            .filter(|v| *v > 0.0)
                            .unwrap_or(xres);
                        let per_unit = match unit {
                            2 => Some(25_400.0),
                            3 => Some(10_000.0),
                            _ => None,
                        };
                        if let Some(u) = per_unit {
                            mpp = Some([u / xres, u / yres]);
                        }
                    }
                }
                levels.push(level);
            } else {
                let base = &levels[0];
                let prev = levels.last().expect("level 0 is pushed first");
                let same_kind = level.tiled == base.tiled;
                let dw = base.width as f64 / level.width as f64;
                let dh = base.height as f64 / level.height as f64;
                let same_aspect = ((dw - dh) / dw.max(dh)).abs() < 0.02;
                if same_kind && same_aspect && level.width < prev.width {
                    levels.push(level);
                }
            }
            ifd += 1;
        }
        let mut info = SlideInfo {
            levels: levels_from_sizes(
                &levels
                    .iter()
                    .map(|l| (l.width, l.height))
                    .collect::<Vec<_>>(),
            ),
            mpp,
            objective_power: power,
            format,
        };
        info.estimate_missing_metadata();
        let file = File::open(path).map_err(|e| OpenError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            info,
            levels,
            cache: Mutex::new(ChunkCache::default()),
            decoders: Mutex::new(Vec::new()),
            decoded: AtomicU64::new(0),
        })
    }

    fn read_level_meta(d: &mut TiffDecoder, ifd: usize) -> Result<Level, String> {
        let (w, h) = d.dimensions().map_err(|e| e.to_string())?;
        let (w, h) = (u64::from(w), u64::from(h));
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(format!(
                "image size {w} x {h} is outside 1..={MAX_SIDE} pixels per side"
            ));
        }
        let color = d.colortype().map_err(|e| e.to_string())?;
        let compression = tag_u64(d, Tag::Compression)?.unwrap_or(1);
        let jpeg = compression == CompressionMethod::ModernJPEG.to_u16() as u64;
        match color {
            ColorType::RGB(8) | ColorType::RGBA(8) | ColorType::Gray(8) => {}
            ColorType::YCbCr(8) if jpeg => {}
            other => {
                return Err(format!(
                    "unsupported sample layout {other:?} (8-bit RGB, RGBA or grey only)"
                ));
            }
        }
        if tag_u64(d, Tag::PlanarConfiguration)?.unwrap_or(1)
            != PlanarConfiguration::Chunky.to_u16() as u64
        {
            return Err("planar (separate-plane) TIFFs are not supported".into());
        }
        let tiled = d.get_chunk_type() == ChunkType::Tile;
        let (chunk_w, chunk_h, offsets, counts) = match d.get_chunk_type() {
            ChunkType::Tile => {
                let tw = tag_u64(d, Tag::TileWidth)?.ok_or("tiled image without TileWidth")?;
                let th = tag_u64(d, Tag::TileLength)?.ok_or("tiled image without TileLength")?;
                let o = d
                    .get_tag_u64_vec(Tag::TileOffsets)
                    .map_err(|e| format!("TileOffsets: {e}"))?;
                let c = d
                    .get_tag_u64_vec(Tag::TileByteCounts)
                    .map_err(|e| format!("TileByteCounts: {e}"))?;
                (tw, th, o, c)
            }
            ChunkType::Strip => {
                let rows = tag_u64(d, Tag::RowsPerStrip)?.unwrap_or(h).min(h);
                let o = d
                    .get_tag_u64_vec(Tag::StripOffsets)
                    .map_err(|e| format!("StripOffsets: {e}"))?;
                let c = d
                    .get_tag_u64_vec(Tag::StripByteCounts)
                    .map_err(|e| format!("StripByteCounts: {e}"))?;
                (w, rows, o, c)
            }
        };
        if chunk_w == 0 || chunk_h == 0 || chunk_w * chunk_h > MAX_CHUNK_PIXELS {
            return Err(format!("chunk size {chunk_w} x {chunk_h} is not usable"));
        }
        let across = w.div_ceil(chunk_w);
        let expected = across * h.div_ceil(chunk_h);
        if offsets.len() as u64 != expected || counts.len() as u64 != expected {
            return Err(format!(
                "{} chunk offsets and {} byte counts for {expected} chunks of {chunk_w} x {chunk_h} in a {w} x {h} image",
                offsets.len(),
                counts.len()
            ));
        }
        let jpeg_tables = if jpeg {
            d.find_tag(Tag::JPEGTables)
                .ok()
                .flatten()
                .and_then(|v| v.into_u8_vec().ok())
        } else {
            None
        };
        Ok(Level {
            ifd,
            width: w,
            height: h,
            chunk_w,
            chunk_h,
            chunks_across: across,
            tiled,
            jpeg,
            ycbcr: matches!(color, ColorType::YCbCr(_)),
            jpeg_tables,
            offsets,
            byte_counts: counts,
        })
    }

    fn chunk(&self, level: usize, index: u64) -> Result<Arc<Chunk>, ReadError> {
        if let Some(c) = self.cache.lock().expect("cache lock").get((level, index)) {
            return Ok(c);
        }
        let lv = &self.levels[level];
        let what = || format!("chunk {index} of level {level} (IFD {})", lv.ifd);
        let err = |reason: String| ReadError::Decode {
            path: self.path.clone(),
            what: what(),
            reason,
        };
        let chunk = if lv.jpeg {
            self.decode_jpeg_chunk(lv, index).map_err(err)?
        } else {
            self.decode_chunk_with_tiff(level, index).map_err(err)?
        };
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let chunk = Arc::new(chunk);
        self.cache
            .lock()
            .expect("cache lock")
            .put((level, index), chunk.clone());
        Ok(chunk)
    }

    /// Decodes the chunks under the level rectangles `rects` ((level, [x0, y0, x1, y1]), inside
    /// their levels) that the cache lacks, each once, in parallel; nothing when they would not
    /// fit in half the cache (they would evict each other before being read).
    fn decode_tiles_of(&self, rects: &[(usize, [u64; 4])]) -> Result<(), ReadError> {
        let mut keys = Vec::new();
        let mut bytes = 0u64;
        for &(level, [x0, y0, x1, y1]) in rects {
            let Some(lv) = self.levels.get(level) else {
                continue;
            };
            for cy in y0 / lv.chunk_h..=(y1 - 1) / lv.chunk_h {
                for cx in x0 / lv.chunk_w..=(x1 - 1) / lv.chunk_w {
                    keys.push((level, cy * lv.chunks_across + cx));
                    bytes += lv.chunk_w * lv.chunk_h * 3;
                }
            }
        }
        if bytes > CACHE_BYTES as u64 / 2 {
            return Ok(());
        }
        keys.sort_unstable();
        keys.dedup();
        let cache = self.cache.lock().expect("cache lock");
        keys.retain(|&k| cache.get(k).is_none());
        drop(cache);
        keys.par_iter()
            .try_for_each(|&(level, index)| self.chunk(level, index).map(drop))
    }

    fn decode_jpeg_chunk(&self, lv: &Level, index: u64) -> Result<Chunk, String> {
        let i = index as usize;
        let (offset, count) = (lv.offsets[i], lv.byte_counts[i]);
        if count == 0 {
            // An absent tile (sparse TIFF) reads as white, as OpenSlide does.
            return Ok(Chunk {
                w: lv.chunk_w,
                h: lv.chunk_h,
                rgb: vec![255; (lv.chunk_w * lv.chunk_h * 3) as usize],
            });
        }
        if count > 256 << 20 {
            return Err(format!("a {count}-byte chunk is implausible"));
        }
        let mut data = vec![0u8; count as usize];
        self.file.read_exact_at(&mut data, offset).map_err(|e| {
            format!("reading {count} bytes at offset {offset}: {e} (is the file truncated?)")
        })?;
        let stream = match &lv.jpeg_tables {
            Some(t) if t.len() >= 4 && data.len() >= 2 => {
                let mut s = Vec::with_capacity(t.len() + data.len());
                s.extend_from_slice(&t[..t.len() - 2]);
                s.extend_from_slice(&data[2..]);
                s
            }
            _ => data,
        };
        // As OpenSlide: the TIFF's photometric tag, not the JPEG stream, says what the samples are.
        // RGB (Aperio SVS) is taken as stored; YCbCr is converted to RGB.
        let options = zune_core::options::DecoderOptions::default()
            .set_max_width(1 << 16)
            .set_max_height(1 << 16);
        let mut dec = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(stream),
            options,
        );
        dec.decode_headers().map_err(|e| format!("JPEG: {e:?}"))?;
        let out = if lv.ycbcr {
            zune_core::colorspace::ColorSpace::RGB
        } else {
            dec.input_colorspace()
                .ok_or("JPEG without a colour space")?
        };
        if out.num_components() != 3 {
            return Err(format!(
                "JPEG with {} components, expected 3",
                out.num_components()
            ));
        }
        dec.set_options(options.jpeg_set_out_colorspace(out));
        let rgb = dec.decode().map_err(|e| format!("JPEG: {e:?}"))?;
        let (w, h) = dec
            .dimensions()
            .map(|(w, h)| (w as u64, h as u64))
            .ok_or("JPEG without dimensions")?;
        if rgb.len() as u64 != w * h * 3 || w < lv.chunk_w.min(lv.width) || h == 0 {
            return Err(format!(
                "JPEG chunk decoded to {w} x {h}, expected {} x {}",
                lv.chunk_w, lv.chunk_h
            ));
        }
        Ok(Chunk { w, h, rgb })
    }

    fn decode_chunk_with_tiff(&self, level: usize, index: u64) -> Result<Chunk, String> {
        let lv = &self.levels[level];
        let mut dec = {
            let mut pool = self.decoders.lock().expect("decoder pool lock");
            pool.iter()
                .position(|(l, _)| *l == level)
                .map(|p| pool.swap_remove(p).1)
        };
        if dec.is_none() {
            let mut d = open_decoder(&self.path)?;
            d.seek_to_image(lv.ifd).map_err(|e| e.to_string())?;
            dec = Some(d);
        }
        let mut d = dec.expect("decoder set above");
        let index32 = u32::try_from(index).map_err(|_| "chunk index overflows".to_string())?;
        let (cw, ch) = d.chunk_data_dimensions(index32);
        let color = d.colortype().map_err(|e| e.to_string())?;
        let result = d.read_chunk(index32).map_err(|e| e.to_string());
        self.decoders
            .lock()
            .expect("decoder pool lock")
            .push((level, d));
        let DecodingResult::U8(raw) = result? else {
            return Err("chunk is not 8-bit".into());
        };
        let (w, h) = (u64::from(cw), u64::from(ch));
        let px = (w * h) as usize;
        let rgb = match color {
            ColorType::RGB(8) if raw.len() >= px * 3 => raw[..px * 3].to_vec(),
            ColorType::RGBA(8) if raw.len() >= px * 4 => {
                crate::pixel_formats::rgba_over_white(&raw[..px * 4])
            }
            ColorType::Gray(8) if raw.len() >= px => {
                raw[..px].iter().flat_map(|&g| [g, g, g]).collect()
            }
            other => {
                return Err(format!(
                    "chunk of {other:?} with {} bytes for {w} x {h}",
                    raw.len()
                ));
            }
        };
        Ok(Chunk { w, h, rgb })
    }
}

impl SlideReader for TiffSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    /// Decodes every tile of the unions of neighbouring boxes once, in parallel (so that no two
    /// boxes decode a shared tile each), then copies each box from the tile cache in parallel,
    /// as `read_region` would read it. Reading the unions as images, as the default does, would
    /// only add copies: tiles are decoded once either way, thanks to the cache.
    fn read_regions(
        &self,
        boxes: &[[i64; 4]],
        res: Resolution,
        interpolation: Interpolation,
    ) -> Result<Vec<RgbImage>, ReadError> {
        let plans = region_union::plan_all(self, boxes, res, interpolation)?;
        self.decode_tiles_of(&region_union::merged_unions(self, &plans))?;
        region_union::read_each(self, &plans)
    }

    /// Tiles, or strips as wide as the level.
    fn tile_size(&self, level: usize) -> Option<(u64, u64)> {
        self.levels.get(level).map(|l| (l.chunk_w, l.chunk_h))
    }

    fn read_level_inside(
        &self,
        level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError> {
        let lv = self
            .levels
            .get(level)
            .ok_or_else(|| ReadError::InvalidRequest {
                path: self.path.clone(),
                reason: format!("level {level} does not exist"),
            })?;
        let (w, h) = (u64::from(width), u64::from(height));
        let mut out = vec![255u8; (w * h * 3) as usize];
        let (cx0, cy0) = (x / lv.chunk_w, y / lv.chunk_h);
        let (cx1, cy1) = ((x + w - 1) / lv.chunk_w, (y + h - 1) / lv.chunk_h);
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                let chunk = self.chunk(level, cy * lv.chunks_across + cx)?;
                let (ox, oy) = (cx * lv.chunk_w, cy * lv.chunk_h);
                // Intersection of the request with this chunk (and with the decoded data).
                let x0 = x.max(ox);
                let y0 = y.max(oy);
                let x1 = (x + w).min(ox + lv.chunk_w.min(chunk.w));
                let y1 = (y + h).min(oy + lv.chunk_h.min(chunk.h));
                if x1 <= x0 {
                    continue;
                }
                for yy in y0..y1 {
                    let src = (((yy - oy) * chunk.w + (x0 - ox)) * 3) as usize;
                    let dst = (((yy - y) * w + (x0 - x)) * 3) as usize;
                    let n = ((x1 - x0) * 3) as usize;
                    out[dst..dst + n].copy_from_slice(&chunk.rgb[src..src + n]);
                }
            }
        }
        Ok(RgbImage::from_raw(width, height, out).expect("buffer sized above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aperio_description_gives_mpp_and_power() {
        let d = "Aperio Image Library v10.0.50\r\n2220x2967 [0,0 2220x2967] (240x240) JPEG/RGB Q=30|AppMag = 20|StripeWidth = 992|MPP = 0.4990|Left = 25.7";
        assert_eq!(aperio_metadata(d), (Some(0.499), Some(20.0)));
        assert_eq!(aperio_metadata("nothing"), (None, None));
    }

    #[test]
    fn a_batch_decodes_each_tile_of_its_union_once() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cmu_pyramid.tif");
        let slide = TiffSlide::open(&path).unwrap();
        assert_eq!(slide.tile_size(0), Some((256, 256)));
        // Eight 256 px patches every 164 px from (100, 300): level-0 x 100..1504, y 300..556,
        // tile columns 0..=5 and rows 1..=2, so 12 tiles; 8 patches alone would touch 8 x 4.
        let boxes: Vec<_> = (0..8)
            .map(|k| [100 + 164 * k, 300, 356 + 164 * k, 556])
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let res = Resolution::Baseline(1.0);
        let many = pool
            .install(|| slide.read_regions(&boxes, res, Interpolation::Optimise))
            .unwrap();
        assert_eq!(slide.decoded.load(Ordering::Relaxed), 12);
        for (b, img) in boxes.iter().zip(&many) {
            assert!(img == &slide.read_region(*b, res, Interpolation::Optimise).unwrap());
        }
        // Cached: reading them again decodes nothing.
        pool.install(|| slide.read_regions(&boxes, res, Interpolation::Optimise))
            .unwrap();
        assert_eq!(slide.decoded.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn non_tiff_files_are_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tif");
        std::fs::write(&p, b"hello world, not a tiff").unwrap();
        assert!(matches!(
            TiffSlide::open(&p),
            Err(OpenError::Unsupported { .. })
        ));
    }
}
