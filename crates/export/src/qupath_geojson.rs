//! QuPath GeoJSON: a `FeatureCollection` streamed feature by feature (never held whole), plain
//! or gzipped.
//!
//! Each feature follows QuPath's own export (v0.4+, `PathObjectTypeAdapters`):
//!
//! ```json
//! {"type":"Feature","id":"<uuid, = the .db key>",
//!  "geometry":{"type":"Polygon","coordinates":[[[x,y],...,[x0,y0]]]},
//!  "properties":{"objectType":"detection",
//!                "classification":{"name":"Neoplastic","color":[r,g,b]},
//!                "measurements":{"prob":0.93,"area_px":412.0},
//!                "isLocked":false}}
//! ```
//!
//! Coordinates are baseline (level 0) pixels, the same valid geometry as the `.db`. Nuclei are
//! `detection`s (QuPath keeps millions of them cheaply); tissue layers are `annotation`s (large
//! regions that QuPath lets the user edit and that can hold detections). `classification` is
//! left out for a nucleus without a type; its colour follows TIAToolbox's tab20 rule
//! (`crate::class_colours`). Measurements: `prob` (the type probability, when known) and
//! `area_px`, the polygon's area in baseline pixels². One feature per line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

use crate::atomic_file::TempOutput;
use crate::export_errors::ExportError;
use crate::polygon_geometry::{Ring, ValidGeometry};

/// Buffer size of the file writer.
const BUFFER_BYTES: usize = 1 << 20;

/// Plain or gzipped output.
#[derive(Debug)]
enum Sink {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

/// What one feature says besides its geometry.
#[derive(Debug, Clone)]
pub(crate) struct FeatureProperties<'a> {
    /// `"detection"` or `"annotation"`.
    pub(crate) object_type: &'static str,
    /// Class name and colour, if the record has a class.
    pub(crate) classification: Option<(Cow<'a, str>, [u8; 3])>,
    /// Type probability.
    pub(crate) prob: Option<f64>,
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    geometry: GeometryJson<'a>,
    properties: PropertiesJson<'a>,
}

#[derive(Serialize)]
struct GeometryJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: Coordinates<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Coordinates<'a> {
    Polygon(&'a [Ring]),
    MultiPolygon(&'a [Vec<Ring>]),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PropertiesJson<'a> {
    object_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    classification: Option<ClassificationJson<'a>>,
    measurements: MeasurementsJson,
    is_locked: bool,
}

#[derive(Serialize)]
struct ClassificationJson<'a> {
    name: &'a str,
    color: [u8; 3],
}

#[derive(Serialize)]
struct MeasurementsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    prob: Option<f64>,
    area_px: f64,
}

/// One feature's JSON, `,\n` first, serialised away from the writer (any thread) and written
/// to the sink in one call (the gzip encoder is slow with the serialiser's many tiny writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeatureJson(Vec<u8>);

impl FeatureJson {
    /// The feature of `geometry` with id `key`.
    ///
    /// # Errors
    /// A serialisation error (none is expected: every map key is a string).
    pub(crate) fn new(
        key: &str,
        geometry: &ValidGeometry,
        properties: &FeatureProperties<'_>,
    ) -> serde_json::Result<Self> {
        let coordinates = if geometry.polygons.len() == 1 {
            Coordinates::Polygon(&geometry.polygons[0])
        } else {
            Coordinates::MultiPolygon(&geometry.polygons)
        };
        let feature = Feature {
            kind: "Feature",
            id: key,
            geometry: GeometryJson {
                kind: geometry.geom_type(),
                coordinates,
            },
            properties: PropertiesJson {
                object_type: properties.object_type,
                classification: properties.classification.as_ref().map(|(name, color)| {
                    ClassificationJson {
                        name,
                        color: *color,
                    }
                }),
                measurements: MeasurementsJson {
                    prob: properties.prob.filter(|p| p.is_finite()),
                    area_px: geometry.area(),
                },
                is_locked: false,
            },
        };
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b",\n");
        serde_json::to_writer(&mut out, &feature)?;
        Ok(Self(out))
    }
}

/// Writes one GeoJSON file.
#[derive(Debug)]
pub(crate) struct GeojsonWriter {
    /// Declared before `temp`: closed before the temporary file is removed on drop.
    sink: Option<Sink>,
    temp: TempOutput,
    records: u64,
}

impl GeojsonWriter {
    /// Create the temporary file and write the collection's header.
    pub(crate) fn create(final_path: &Path, gzip: bool) -> Result<Self, ExportError> {
        let temp = TempOutput::new(final_path)?;
        let file = File::create(temp.temp_path())
            .map_err(|e| ExportError::io("create", temp.temp_path(), e))?;
        let buffered = BufWriter::with_capacity(BUFFER_BYTES, file);
        let mut sink = if gzip {
            Sink::Gzip(Box::new(GzEncoder::new(buffered, Compression::default())))
        } else {
            Sink::Plain(buffered)
        };
        sink.write_all(br#"{"type":"FeatureCollection","features":["#)
            .map_err(|e| ExportError::io("write", temp.temp_path(), e))?;
        Ok(Self {
            sink: Some(sink),
            temp,
            records: 0,
        })
    }

    /// Features written so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The final path.
    pub(crate) fn final_path(&self) -> &Path {
        self.temp.final_path()
    }

    /// The temporary path (named in errors).
    pub(crate) fn temp_path(&self) -> &Path {
        self.temp.temp_path()
    }

    /// Append one feature (made by [`FeatureJson::new`]).
    pub(crate) fn append(&mut self, feature: &FeatureJson) -> Result<(), ExportError> {
        let path = self.temp.temp_path();
        let sink = self.sink.as_mut().ok_or_else(|| finished(path))?;
        // The first feature goes without the comma.
        let bytes = if self.records == 0 {
            &feature.0[1..]
        } else {
            &feature.0[..]
        };
        sink.write_all(bytes)
            .map_err(|e| ExportError::io("write", path, e))?;
        self.records += 1;
        Ok(())
    }

    /// Close the collection, flush and fsync the temporary file.
    pub(crate) fn finalize(&mut self) -> Result<(), ExportError> {
        let path = self.temp.temp_path().to_path_buf();
        let mut sink = self.sink.take().ok_or_else(|| finished(&path))?;
        let io = |e| ExportError::io("write", &path, e);
        sink.write_all(b"\n]}\n").map_err(io)?;
        let buffered = match sink {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish().map_err(io)?,
        };
        let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all()
            .map_err(|e| ExportError::io("fsync", &path, e))
    }

    /// Rename the finalised file into place.
    pub(crate) fn commit(&mut self, overwrite: bool) -> Result<(), ExportError> {
        self.temp.commit(overwrite)
    }
}

fn finished(path: &Path) -> ExportError {
    ExportError::io(
        "write to",
        path,
        std::io::Error::other("the GeoJSON was already finalised"),
    )
}
