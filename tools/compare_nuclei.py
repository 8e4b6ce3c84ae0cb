"""Detection agreement of two nuclei GeoJSON outputs (e.g. a bf16 run against the fp32 run).

Run in the TIAToolbox venv (it has shapely):

    tools/fixtures/.venv/bin/python tools/compare_nuclei.py A.geojson B.geojson [--iou 0.5]

Each polygon of A is matched to at most one polygon of B with IoU >= --iou (greedy by IoU,
largest first); prints the counts, precision / recall / F1 of A against B (B as the reference),
the share of matched pairs whose classification differs, and the mean IoU of the matches, as
one JSON line.
"""

import argparse
import gzip
import json
import sys
from pathlib import Path

from shapely.geometry import shape
from shapely.strtree import STRtree


def load(path: Path) -> list:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        doc = json.load(f)
    feats = doc["features"] if isinstance(doc, dict) else doc
    out = []
    for feat in feats:
        geom = shape(feat["geometry"])
        if not geom.is_valid:
            geom = geom.buffer(0)
        cls = (feat.get("properties") or {}).get("classification") or {}
        out.append((geom, cls.get("name")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--iou", type=float, default=0.5)
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    tree = STRtree([g for g, _ in b])
    pairs = []
    for i, (ga, _) in enumerate(a):
        for j in tree.query(ga):
            gb = b[j][0]
            inter = ga.intersection(gb).area
            if inter <= 0:
                continue
            iou = inter / (ga.area + gb.area - inter)
            if iou >= args.iou:
                pairs.append((iou, i, int(j)))
    pairs.sort(reverse=True)
    used_a, used_b, matched = set(), set(), []
    for iou, i, j in pairs:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched.append((iou, i, j))
    tp = len(matched)
    precision = tp / len(a) if a else 1.0
    recall = tp / len(b) if b else 1.0
    f1 = 2 * tp / (len(a) + len(b)) if (a or b) else 1.0
    class_diff = sum(1 for _, i, j in matched if a[i][1] != b[j][1])
    print(json.dumps({
        "a": str(args.a), "b": str(args.b), "iou": args.iou,
        "nuclei_a": len(a), "nuclei_b": len(b), "matched": tp,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "matched_class_differs": round(class_diff / tp, 4) if tp else None,
        "mean_iou": round(sum(m[0] for m in matched) / tp, 4) if tp else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
