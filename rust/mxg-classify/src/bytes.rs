//! Searching text for rare bytes quickly.

/// The first byte at or after `from` that `wanted` accepts. Whole chunks
/// are tested at once (the compiler turns the fold into vector compares
/// for a simple `wanted`), and only a chunk with a hit is searched byte
/// by byte: the bytes asked for (digits in prose, '<' and '&' in the text
/// of HTML) are rare, and most of a text is passed over fast.
pub(crate) fn find_byte(b: &[u8], from: usize, wanted: impl Fn(u8) -> bool) -> Option<usize> {
    const CHUNK: usize = 64;
    let rest = b.get(from..)?;
    let mut chunks = rest.chunks_exact(CHUNK);
    for (n, chunk) in chunks.by_ref().enumerate() {
        // Fixed length and no early exit: this is what vectorises.
        if chunk.iter().fold(0u8, |any, &c| any | u8::from(wanted(c))) != 0 {
            return chunk
                .iter()
                .position(|&c| wanted(c))
                .map(|p| from + n * CHUNK + p);
        }
    }
    let tail = chunks.remainder();
    let tail_start = from + rest.len() - tail.len();
    tail.iter().position(|&c| wanted(c)).map(|p| tail_start + p)
}

#[cfg(test)]
mod tests {
    use super::find_byte;

    #[test]
    fn in_and_across_chunks() {
        let digit = |c: u8| c.is_ascii_digit();
        let mut text = "x".repeat(200);
        assert_eq!(find_byte(text.as_bytes(), 0, digit), None);
        // The last byte of the first chunk, the first of the second, one
        // inside the second and one in the tail after the whole chunks.
        for at in [63, 64, 100, 199] {
            text.replace_range(at..=at, "7");
        }
        let b = text.as_bytes();
        assert_eq!(find_byte(b, 0, digit), Some(63));
        assert_eq!(find_byte(b, 63, digit), Some(63));
        assert_eq!(find_byte(b, 64, digit), Some(64));
        assert_eq!(find_byte(b, 65, digit), Some(100));
        assert_eq!(find_byte(b, 101, digit), Some(199));
        assert_eq!(find_byte(b, 200, digit), None);
        assert_eq!(find_byte(b, 201, digit), None);
    }
}
