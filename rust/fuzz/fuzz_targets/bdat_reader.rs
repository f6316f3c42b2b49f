//! BDAT (RFC 3030) as the inbound session drives it: commands framed and
//! parsed from the stream, each `BDAT n [LAST]` followed by n octets fed
//! to the `BdatReader` from whatever was buffered and the reads after it,
//! the rest handed back to the framer.
//!
//! Input: one seed byte (size limit, read sizes), then the stream.
//! Invariants:
//! - nothing panics;
//! - the reader takes exactly the announced octets, never one more: what
//!   follows a chunk is framed as commands again, in stream order;
//! - the body is the concatenation of the chunks, `size` their sum, and
//!   `oversize` set exactly when that sum passed the limit;
//! - `check_line_ends` and the DATA reader agree: a body it refuses for a
//!   bare CR or LF, dot-stuffed, fails DATA with the same error, and a body
//!   it accepts, dot-stuffed, reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxg_fuzz::{dot_stuff, pieces};
use mxg_smtp::command::Framed;
use mxg_smtp::data::check_line_ends;
use mxg_smtp::{parse_command, Bdat, BdatReader, Command, DataProgress, DataReader, LineFramer};

struct Chunking<'a> {
    stream: &'a [u8],
    max_size: usize,
    /// Offset in `stream` of the first octet not yet framed or taken.
    pos: usize,
    reader: BdatReader,
    /// The current chunk, while its octets are read: (length, last).
    chunk: Option<(u64, bool)>,
    taken: u64,
    announced: u64,
    expected: Vec<u8>,
}

impl Chunking<'_> {
    /// Feeds one read; false once the framer had to skip a line (the
    /// offsets are then unknown and the rest is not checked).
    fn read(&mut self, framer: &mut LineFramer, input: &[u8]) -> bool {
        let mut pending = input.to_vec();
        loop {
            if let Some((len, last)) = self.chunk {
                let used = self.reader.feed(&pending);
                assert!(used <= pending.len());
                assert!(self.taken + used as u64 <= len, "read past the chunk");
                assert_eq!(pending[..used], self.stream[self.pos..self.pos + used]);
                self.expected.extend_from_slice(&pending[..used]);
                self.pos += used;
                self.taken += used as u64;
                pending.drain(..used);
                if !self.reader.chunk_done() {
                    assert!(pending.is_empty(), "chunk open but input left over");
                    assert!(self.taken < len);
                    return true;
                }
                assert_eq!(self.taken, len);
                self.chunk = None;
                if last {
                    self.finish();
                }
            }
            framer.push(&pending);
            pending.clear();
            match framer.next_line() {
                None => return true,
                Some(Framed::TooLong) => return false,
                Some(Framed::Line(line)) => {
                    assert_eq!(line, self.stream[self.pos..self.pos + line.len()]);
                    self.pos += line.len();
                    if let Ok(Command::Bdat(Bdat::Chunk {
                        size: chunk_size,
                        last: is_last,
                    })) = parse_command(&line)
                    {
                        self.reader.begin_chunk(chunk_size, self.max_size);
                        self.announced = self.announced.saturating_add(chunk_size);
                        self.chunk = Some((chunk_size, is_last));
                        self.taken = 0;
                        // As the session does: the reader gets what the
                        // framer buffered after the command line.
                        pending = framer.take_buffered();
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        let reader = std::mem::take(&mut self.reader);
        assert_eq!(reader.size, self.announced);
        assert_eq!(reader.oversize, self.announced > self.max_size as u64);
        let expected = std::mem::take(&mut self.expected);
        self.announced = 0;
        if reader.oversize {
            return;
        }
        let body = reader.into_body();
        assert_eq!(body, expected, "body is not the chunks");
        let check = check_line_ends(&body);
        let mut data = DataReader::new(usize::MAX, usize::MAX);
        let stuffed = dot_stuff(&body);
        let progress = data.feed(&stuffed);
        match check {
            Err(e) => assert_eq!(progress, DataProgress::Failed(e), "{body:?}"),
            Ok(longest) => {
                assert!(longest <= body.len());
                if body.is_empty() || body.ends_with(b"\r\n") {
                    assert_eq!(
                        progress,
                        DataProgress::Done {
                            consumed: stuffed.len()
                        }
                    );
                    assert!(longest <= data.longest_line && data.longest_line <= longest + 1);
                    assert_eq!(data.into_body(), body);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max_size = usize::from(seed & 0x3f) * 64;
    let mut framer = LineFramer::new(2048);
    let mut c = Chunking {
        stream,
        max_size,
        pos: 0,
        reader: BdatReader::default(),
        chunk: None,
        taken: 0,
        announced: 0,
        expected: Vec::new(),
    };
    for piece in pieces(seed, stream) {
        if !c.read(&mut framer, piece) {
            return;
        }
    }
    // The framer drops an unfinished line once it is over its limit (it
    // reports it when the line's end arrives): then the tail is gone on
    // purpose. Otherwise every octet is framed, taken or buffered.
    let rest = &stream[c.pos..];
    let dropped_tail = c.chunk.is_none() && !rest.contains(&b'\n') && rest.len() > 2048;
    if !dropped_tail {
        assert_eq!(c.pos + framer.buffered(), stream.len(), "octets lost");
    }
});
