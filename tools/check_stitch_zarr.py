#!/usr/bin/env python3
"""Check that zarr-python 3 opens the probability maps written by mtseg-stitch.

Runs the `write_probability_store` example of crates/stitch (or uses --out-dir as already
written), opens `probabilities.zarr` with zarr-python, and compares every array bit for bit with
the expected maps the example wrote beside it.

Usage (TIAToolbox's venv has zarr 3.x):
    tools/fixtures/.venv/bin/python tools/check_stitch_zarr.py
    tools/fixtures/.venv/bin/python tools/check_stitch_zarr.py --out-dir DIR --no-build

Not run by CI (CI has no zarr-python); the Rust test
crates/stitch/tests/stitch_tests/probability_store.rs checks the same store's metadata and values.
Exit status 0 and a final "ok" line when the store is readable and exact.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, help="where the example writes (default: a temp dir)")
    parser.add_argument("--no-build", action="store_true", help="do not run the example; read --out-dir")
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="mtseg-stitch-zarr-check-"))
    if not args.no_build:
        repo = Path(__file__).resolve().parent.parent
        subprocess.run(
            ["cargo", "run", "--quiet", "-p", "mtseg-stitch", "--example", "write_probability_store", "--", str(out_dir)],
            cwd=repo,
            check=True,
        )
    meta = json.loads((out_dir / "expected.json").read_text())
    width, height = meta["slide_size"]
    root = zarr.open_group(out_dir / "probabilities.zarr", mode="r")
    print(f"zarr {zarr.__version__}: opened {out_dir / 'probabilities.zarr'} (zarr_format={root.metadata.zarr_format})")
    attrs = root.attrs["mtseg_stitch"]
    assert attrs["mask_padding"] == meta["mask_padding"], attrs
    assert attrs["canvas_origin"] == meta["canvas_origin"], attrs
    assert root.attrs["resolution"] == {"units": "mpp", "value": 0.5}
    for h, c in enumerate(meta["channels"]):
        array = root[f"probabilities/{h}"]
        assert array.shape == (height, width, c), array.shape
        assert array.dtype == np.float32, array.dtype
        assert array.attrs["head"] == meta["heads"][h]
        got = array[:]
        want = np.fromfile(out_dir / f"expected_{h}.f32", dtype="<f4").reshape(height, width, c)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"head {h} differs"
        print(
            f"probabilities/{h}: shape {array.shape}, chunks {array.chunks}, shards {array.shards}, "
            f"codecs {[type(x).__name__ for x in array.compressors] or '-'}; bitwise equal, "
            f"mean {float(got.mean()):.4f}"
        )
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
