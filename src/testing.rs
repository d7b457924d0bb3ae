//! Support shared by unit tests of several modules.

/// `check(buf, at, byte)` for every byte value at every offset `at` of a
/// buffer of `filler` of each length in `lens`. The byte scans that go
/// sixteen bytes at a time (SSE2 lanes, then a scalar tail) are tested so
/// against their byte-at-a-time rule.
pub(crate) fn each_byte_at_each_offset(
    lens: &[usize],
    filler: u8,
    mut check: impl FnMut(&[u8], usize, u8),
) {
    for &len in lens {
        let mut buf = vec![filler; len];
        for at in 0..len {
            for byte in 0..=255u8 {
                buf[at] = byte;
                check(&buf, at, byte);
            }
            buf[at] = filler;
        }
    }
}
