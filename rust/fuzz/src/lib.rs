//! Helpers shared by the fuzz targets.
//!
//! Most targets read their input as `seed byte + stream`: the seed picks
//! the limits and the points at which the stream is cut into reads, so
//! one input covers "the same bytes, delivered differently", which is how
//! a network hands them to the readers.

/// Cuts `bytes` into consecutive non-empty pieces whose sizes follow from
/// `seed`: its two high bits choose the scale (single bytes, a few bytes,
/// dozens, whole buffers), the rest seeds a small xorshift generator.
pub fn pieces(seed: u8, bytes: &[u8]) -> Vec<&[u8]> {
    let scale = match seed >> 6 {
        0 => 1,
        1 => 4,
        2 => 64,
        _ => 4096,
    };
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = 1 + (state as usize) % scale;
        let (head, tail) = rest.split_at(len.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Dot-stuffs a body for DATA (RFC 5321 §4.5.2) and appends the end of
/// data. `body` must be empty or end in CRLF.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Makes a valid body out of any bytes: every CR and LF goes, the lines
/// they separated end in CRLF.
pub fn as_body(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    for line in bytes.split(|&b| b == b'\n') {
        out.extend(line.iter().copied().filter(|&b| b != b'\r'));
        out.extend_from_slice(b"\r\n");
    }
    if bytes.is_empty() {
        out.clear();
    }
    out
}
