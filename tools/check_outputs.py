"""Check mtseg-export outputs with the Python tools that will read them.

Usage (the TIAToolbox venv: tiatoolbox 2.1.3, shapely 2, zarr 3):

    tools/fixtures/.venv/bin/python tools/check_outputs.py OUTDIR

For every file under OUTDIR:
  *.db              opened with tiatoolbox.annotation.SQLiteStore; every geometry valid
                    (shapely), properties with the expected keys, objtype / cx / cy / area /
                    rtree bounds equal to shapely's values, a spatial query answered.
  *.geojson(.gz)    a FeatureCollection; every feature a valid, closed Polygon or MultiPolygon,
                    properties.objectType "detection" (nuclei) or "annotation" (layers),
                    unique UUID ids (equal to the keys of the .db of the same name, if any).
  *.zarr            opened with zarr-python 3: arrays, dtypes and shapes, attributes,
                    max id == count, map values among the ids / classes.
Prints a summary and exits non-zero on any failure.
"""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
import sys
import uuid
from pathlib import Path

import numpy as np
import shapely
import zarr
from shapely.geometry import shape
from tiatoolbox.annotation import SQLiteStore

NUCLEUS_KEYS = {"box", "centroid", "prob", "type"}
LAYER_KEYS = {"box", "type"}

failures: list[str] = []


def fail(path: Path, message: str) -> None:
    failures.append(f"{path}: {message}")


def check_db(path: Path) -> str:
    store = SQLiteStore(path)
    n = len(store)
    invalid = 0
    kinds: dict[str, int] = {}
    keys_seen = set()
    for key, annotation in store.items():
        keys_seen.add(key)
        geometry = annotation.geometry
        kinds[geometry.geom_type] = kinds.get(geometry.geom_type, 0) + 1
        if not geometry.is_valid:
            invalid += 1
            fail(path, f"annotation {key} invalid: {shapely.is_valid_reason(geometry)}")
        props = set(annotation.properties)
        if props not in (NUCLEUS_KEYS, LAYER_KEYS):
            fail(path, f"annotation {key} has properties {sorted(props)}")
        try:
            uuid.UUID(key)
        except ValueError:
            fail(path, f"key {key!r} is not a UUID")
    # Raw columns against shapely's values.
    con = sqlite3.connect(path)
    meta = dict(con.execute("SELECT key, value FROM metadata"))
    if json.loads(meta.get("version", "null")) != "1.0.1" or json.loads(
        meta.get("compression", "null")
    ) != "zlib":
        fail(path, f"metadata {meta}")
    rows = con.execute(
        "SELECT a.id, objtype, cx, cy, area, min_x, min_y, max_x, max_y, key "
        "FROM annotations a JOIN rtree r ON a.id = r.id"
    ).fetchall()
    if len(rows) != n:
        fail(path, f"{len(rows)} rtree rows for {n} annotations")
    for row_id, objtype, cx, cy, area, x0, y0, x1, y1, key in rows:
        geometry = store[key].geometry
        if objtype != geometry.geom_type:
            fail(path, f"row {row_id}: objtype {objtype} != {geometry.geom_type}")
        c = geometry.centroid
        if not (math.isclose(cx, c.x, abs_tol=1e-6) and math.isclose(cy, c.y, abs_tol=1e-6)):
            fail(path, f"row {row_id}: centroid ({cx}, {cy}) != shapely ({c.x}, {c.y})")
        if not math.isclose(area, geometry.area, rel_tol=1e-9, abs_tol=1e-9):
            fail(path, f"row {row_id}: area {area} != shapely {geometry.area}")
        bx0, by0, bx1, by1 = geometry.bounds
        if not (x0 <= bx0 and y0 <= by0 and x1 >= bx1 and y1 >= by1):
            fail(path, f"row {row_id}: rtree box does not hold the bounds")
    if n:
        bx0, by0, bx1, by1 = store[rows[0][9]].geometry.bounds
        hits = store.query(shapely.box(bx0, by0, bx1, by1))
        if rows[0][9] not in hits:
            fail(path, "a spatial query misses the annotation it should find")
    con.close()
    store.close()
    kinds_text = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    return f"{n} annotations ({kinds_text}), {invalid} invalid"


def read_json(path: Path) -> dict:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def ring_closed(ring: list) -> bool:
    return len(ring) >= 4 and ring[0] == ring[-1]


def check_geojson(path: Path) -> str:
    doc = read_json(path)
    if doc.get("type") != "FeatureCollection":
        fail(path, f"type {doc.get('type')!r}")
        return "not a FeatureCollection"
    features = doc["features"]
    invalid = 0
    ids = []
    object_types: dict[str, int] = {}
    for feature in features:
        ids.append(feature.get("id"))
        geometry = feature["geometry"]
        kind = geometry["type"]
        polygons = (
            [geometry["coordinates"]] if kind == "Polygon" else geometry["coordinates"]
        )
        if kind not in ("Polygon", "MultiPolygon"):
            fail(path, f"feature {feature.get('id')}: geometry {kind}")
        if not all(ring_closed(r) for p in polygons for r in p):
            fail(path, f"feature {feature.get('id')}: a ring is not closed")
        geom = shape(geometry)
        if not geom.is_valid:
            invalid += 1
            fail(path, f"feature {feature.get('id')}: {shapely.is_valid_reason(geom)}")
        props = feature["properties"]
        object_type = props.get("objectType")
        object_types[object_type] = object_types.get(object_type, 0) + 1
        if object_type not in ("detection", "annotation"):
            fail(path, f"feature {feature.get('id')}: objectType {object_type!r}")
        if "classification" in props:
            c = props["classification"]
            if not isinstance(c.get("name"), str) or len(c.get("color", [])) != 3:
                fail(path, f"feature {feature.get('id')}: classification {c}")
        area = props.get("measurements", {}).get("area_px")
        if area is None or not math.isclose(area, geom.area, rel_tol=1e-9):
            fail(path, f"feature {feature.get('id')}: area_px {area} != {geom.area}")
    if len(set(ids)) != len(ids):
        fail(path, "feature ids are not unique")
    # Same keys as the .db of the same name.
    stem = path.name.removesuffix(".gz").removesuffix(".geojson")
    db = path.with_name(stem + ".db")
    if db.exists():
        con = sqlite3.connect(db)
        keys = {k for (k,) in con.execute("SELECT key FROM annotations")}
        con.close()
        if keys != set(ids):
            fail(path, f"feature ids differ from the keys of {db.name}")
    types = ", ".join(f"{v} {k}" for k, v in sorted(object_types.items()))
    return f"{len(features)} features ({types}), {invalid} invalid"


EXPECTED = {
    "id": (np.uint64, 1),
    "box": (np.int32, 2),
    "type": (np.uint32, 1),
    "contour_offsets": (np.uint64, 1),
    "contour_points": (np.int32, 2),
}
NUCLEI_EXTRA = {"centroid": (np.float64, 2), "prob": (np.float32, 1)}


def check_zarr(path: Path) -> str:
    root = zarr.open_group(str(path), mode="r")
    attrs = root.attrs.asdict().get("mtseg")
    if not attrs or "scale_factor" not in attrs or "provenance" not in attrs:
        fail(path, f"root attributes {root.attrs.asdict()}")
        return "no mtseg attributes"
    width, height = attrs["processing_size"]
    parts = []
    for task in attrs["tasks"]:
        group = root[task]
        count = group.attrs["count"]
        expected = dict(EXPECTED)
        if task == "nuclei_segmentation":
            expected.update(NUCLEI_EXTRA)
        for name, (dtype, ndim) in expected.items():
            array = group[name]
            if array.dtype != dtype or array.ndim != ndim:
                fail(path, f"{task}/{name}: {array.dtype} {array.shape}")
        ids = group["id"][:]
        offsets = group["contour_offsets"][:]
        points = group["contour_points"]
        if len(ids) != count or group["box"].shape != (count, 4):
            fail(path, f"{task}: count {count} but {len(ids)} ids, box {group['box'].shape}")
        if len(offsets) != count + 1 or offsets[-1] != points.shape[0]:
            fail(path, f"{task}: offsets do not match the {points.shape[0]} points")
        if count and (ids.max() != count or not np.all(np.diff(ids.astype(np.int64)) > 0)):
            fail(path, f"{task}: max id {ids.max()} != count {count} or ids not increasing")
        map_name = "instance_map" if task == "nuclei_segmentation" else "layer_map"
        text = f"{task}: {count} records"
        if map_name in group:
            label_map = group[map_name]
            map_dtype = np.uint32 if map_name == "instance_map" else np.uint8
            if label_map.dtype != map_dtype or label_map.shape != (height, width):
                fail(path, f"{task}/{map_name}: {label_map.dtype} {label_map.shape}")
            values = np.unique(label_map[:])
            allowed = set(ids.tolist()) if map_name == "instance_map" else set(group["type"][:].tolist())
            stray = set(values.tolist()) - allowed - {0}
            if stray:
                fail(path, f"{task}/{map_name}: values {sorted(stray)[:5]} are not records")
            text += f", {map_name} {label_map.dtype} {label_map.shape} with {len(values) - 1} labels"
        parts.append(text)
    return "; ".join(parts)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = Path(sys.argv[1])
    checks = [
        ("*.db", check_db),
        ("*.geojson", check_geojson),
        ("*.geojson.gz", check_geojson),
        ("*.zarr", check_zarr),
    ]
    checked = 0
    for pattern, check in checks:
        for path in sorted(out.rglob(pattern)):
            before = len(failures)
            try:
                summary = check(path)
            except Exception as e:  # noqa: BLE001 - report and go on
                fail(path, f"{type(e).__name__}: {e}")
                summary = "could not be read"
            status = "ok" if len(failures) == before else "FAILED"
            print(f"{status:6} {path}: {summary}")
            checked += 1
    if checked == 0:
        fail(out, "no .db, .geojson(.gz) or .zarr outputs found")
    for message in failures[:50]:
        print(f"  failure: {message}")
    print(f"{checked} outputs checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
