//! The streaming driver gives exactly the instances and ids of `tile_mode` on the whole canvas,
//! whatever the row chunking, and never hands out an instance above a row it declared final.

#[allow(unreachable_pub)]
#[path = "support/canvases.rs"]
mod canvases;

use anyhow::Result;
use mtseg_instmerge::{
    CanvasMaps, RowChunk, StreamingTileMode, TiaToolboxCompat, TileModeParams, tile_mode,
};
use mtseg_postproc::render_hovernet_targets;
use mtseg_tiling::{Size2, tile_layout};

struct Maps {
    h: usize,
    w: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Vec<f32>,
}

/// Streams `m` in chunks of the given sizes (cycled); returns (id, bbox) of the nuclei and
/// checks the first-open-row promise on the way.
fn stream(m: &Maps, tile: u64, margin: u64, chunks: &[usize]) -> Result<Vec<(u64, [i32; 4])>> {
    let tiles = tile_layout(Size2::new(m.w as u64, m.h as u64), tile, margin, |_| true)?;
    let params = TileModeParams::new(tile, margin);
    let mut d = StreamingTileMode::new(
        Size2::new(m.w as u64, m.h as u64),
        tiles,
        margin,
        params.np_hv,
        TiaToolboxCompat::OFF,
        [true, false],
    )?;
    let max_rows = d.max_window_rows(*chunks.iter().max().unwrap());
    let mut out = Vec::new();
    let mut open = 0usize;
    let mut y = 0;
    let mut k = 0;
    let mut check =
        |got: mtseg_instmerge::StreamedInstances, out: &mut Vec<(u64, [i32; 4])>| -> usize {
            for n in &got.nuclei {
                assert!(
                    n.item.bbox[1] as usize >= open,
                    "{:?} above row {open}",
                    n.item.bbox
                );
                out.push((n.id, n.item.bbox));
            }
            assert!(got.first_open_row >= open, "first open row went back");
            open = got.first_open_row;
            got.tiles_done
        };
    let mut tiles_done = 0;
    while y < m.h {
        let rows = chunks[k % chunks.len()].min(m.h - y);
        k += 1;
        let (a, b) = (y * m.w, (y + rows) * m.w);
        let got = d.push_rows(RowChunk {
            y0: y,
            rows,
            np: &m.np[a..b],
            hv: &m.hv[2 * a..2 * b],
            tp: Some(&m.tp[a..b]),
            ls: None,
        })?;
        tiles_done += check(got, &mut out);
        y += rows;
    }
    assert!(
        d.peak_window_rows() <= max_rows,
        "{} > {max_rows}",
        d.peak_window_rows()
    );
    let count = d.tile_count();
    tiles_done += check(d.finish()?, &mut out);
    assert_eq!(tiles_done, count);
    Ok(out)
}

fn whole(m: &Maps, tile: u64, margin: u64) -> Result<Vec<(u64, [i32; 4])>> {
    let canvas = CanvasMaps {
        height: m.h,
        width: m.w,
        np: &m.np,
        hv: &m.hv,
        tp: Some(&m.tp),
        ls: None,
    };
    let r = tile_mode(&canvas, &TileModeParams::new(tile, margin))?;
    Ok(r.nuclei.iter().map(|n| (n.id, n.item.bbox)).collect())
}

#[test]
fn streaming_equals_whole_canvas_tile_mode_on_hgsc_nest() -> Result<()> {
    let (t, _) = canvases::hgsc_nest()?;
    let m = Maps {
        h: t.height,
        w: t.width,
        np: t.np,
        hv: t.hv,
        tp: t.tp,
    };
    let expected = whole(&m, 328, 64)?;
    assert!(expected.len() > 1000, "{}", expected.len());
    for chunks in [&[164][..], &[1], &[37, 200, 3], &[1500]] {
        assert_eq!(stream(&m, 328, 64, chunks)?, expected, "chunks {chunks:?}");
    }
    Ok(())
}

#[test]
fn random_blobs_stream_like_the_whole_canvas() -> Result<()> {
    // a deterministic pseudo-random field of small square nuclei on a 300 x 260 canvas
    let (h, w) = (260usize, 300usize);
    let labels = canvases::random_blob_labels(h, w, 120, 4..9, 12345);
    let t = render_hovernet_targets(&labels, None, h, w, 1.0)?;
    let m = Maps {
        h,
        w,
        np: t.np,
        hv: t.hv,
        tp: t.tp,
    };
    for (tile, margin) in [(60, 8), (100, 16), (400, 16)] {
        let expected = whole(&m, tile, margin)?;
        for chunks in [&[7][..], &[60, 1], &[260]] {
            assert_eq!(stream(&m, tile, margin, chunks)?, expected);
        }
    }
    Ok(())
}

#[test]
fn rows_out_of_order_are_an_error() -> Result<()> {
    let tiles = tile_layout(Size2::new(10, 10), 10, 0, |_| true)?;
    let p = TileModeParams::new(10, 0);
    let mut d = StreamingTileMode::new(
        Size2::new(10, 10),
        tiles,
        0,
        p.np_hv,
        TiaToolboxCompat::OFF,
        [false, false],
    )?;
    let np = vec![0.0; 20];
    let hv = vec![0.0; 40];
    let chunk = |y0| RowChunk {
        y0,
        rows: 2,
        np: &np,
        hv: &hv,
        tp: None,
        ls: None,
    };
    let e = d.push_rows(chunk(2)).unwrap_err();
    assert!(e.to_string().contains("expected row 0"), "{e}");
    d.push_rows(chunk(0))?;
    let e = d.finish().unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    Ok(())
}

#[test]
fn row_chunks_from_head_maps_in_any_order() -> Result<()> {
    use mtseg_instmerge::MergeError;
    use mtseg_types::HeadKind::{Hv, Ls, Np, Tp};
    // two rows of a 3 px wide canvas
    let (np, hv, tp) = (vec![0.5f32; 6], vec![0.25f32; 12], vec![1f32; 6]);
    let c = RowChunk::from_heads(4, 2, &[(Tp, &tp), (Hv, &hv), (Np, &np)])?;
    assert_eq!((c.y0, c.rows), (4, 2));
    assert!(std::ptr::eq(c.np, &np[..]) && std::ptr::eq(c.hv, &hv[..]));
    assert!(c.tp.is_some_and(|t| std::ptr::eq(t, &tp[..])) && c.ls.is_none());
    let c = RowChunk::from_heads(0, 2, &[(Np, &np), (Ls, &tp), (Hv, &hv)])?;
    assert!(c.ls.is_some_and(|l| std::ptr::eq(l, &tp[..])) && c.tp.is_none());

    let e = RowChunk::from_heads(4, 2, &[(Hv, &hv), (Tp, &tp)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the row chunk from row 4 has no np map (the streaming driver needs np and hv)"
    );
    let e = RowChunk::from_heads(4, 2, &[(Np, &np), (Tp, &tp)]).unwrap_err();
    assert!(
        matches!(e, MergeError::MissingHead { head: Hv, y0: 4 }),
        "{e}"
    );
    let e = RowChunk::from_heads(4, 2, &[(Np, &np), (Hv, &hv), (Np, &np)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the row chunk from row 4 has the np map twice"
    );

    // the driver takes it as it takes a chunk built field by field
    let canvas = Size2::new(3, 2);
    let tiles = tile_layout(canvas, 10, 0, |_| true)?;
    let p = TileModeParams::new(10, 0);
    let mut d = StreamingTileMode::new(
        canvas,
        tiles,
        0,
        p.np_hv,
        TiaToolboxCompat::OFF,
        [true, false],
    )?;
    let got = d.push_rows(RowChunk::from_heads(
        0,
        2,
        &[(Np, &np), (Hv, &hv), (Tp, &tp)],
    )?)?;
    assert_eq!(got.tiles_done, 1);
    Ok(())
}
