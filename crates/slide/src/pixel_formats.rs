//! Pixel-format conversions shared by the backends.

/// Composites 8-bit RGBA (straight alpha) over white into RGB, as TIAToolbox's
/// `background_composite` does for images with transparency.
pub(crate) fn rgba_over_white(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let a = u32::from(p[3]);
            let c = |v: u8| ((u32::from(v) * a + 255 * (255 - a) + 127) / 255) as u8;
            [c(p[0]), c(p[1]), c(p[2])]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_stays_transparent_turns_white() {
        assert_eq!(
            rgba_over_white(&[10, 20, 30, 255, 10, 20, 30, 0, 0, 0, 0, 128]),
            vec![10, 20, 30, 255, 255, 255, 127, 127, 127]
        );
    }
}
