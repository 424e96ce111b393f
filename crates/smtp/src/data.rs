//! The DATA body reader: removes dot-stuffing, finds the one true end of data
//! (`CRLF . CRLF`), enforces the message size limit while streaming, and refuses a bare
//! CR or a bare LF anywhere in the body. Written by hand rather than taken from
//! smtp-proto because its reader accepts bare line feeds silently, and a bare LF or CR
//! that one server takes as a line end and another does not is what SMTP smuggling
//! exploits. With this reader no lone CR or LF ever ends a line, so no `.` after one can
//! end the message and no second message can start inside the first.

use memchr::memchr2;

/// What one call to [`DataReader::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All input consumed; the message goes on.
    NeedMore,
    /// The end-of-data line was found after `consumed` bytes of the input.
    End { consumed: usize },
    /// A bare CR or LF was found after `consumed` bytes; the session must reject.
    BareLineEnding { consumed: usize, lf: bool },
}

/// Incremental DATA reader. Body bytes go into the caller's buffer with CRLF line ends
/// and without the transparency dots.
#[derive(Debug)]
pub struct DataReader {
    at_line_start: bool,
    /// The current line began with a `.` that was removed.
    dot_line: bool,
    /// Bytes written for the current line (after the removed dot).
    line_len: usize,
    /// A CR was seen and its LF is still to come.
    pending_cr: bool,
    /// Body bytes seen, stored or not.
    size: usize,
    max_size: usize,
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        DataReader {
            at_line_start: true,
            dot_line: false,
            line_len: 0,
            pending_cr: false,
            size: 0,
            max_size,
        }
    }

    /// Size of the body so far, counting bytes past the limit too.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn too_big(&self) -> bool {
        self.size > self.max_size
    }

    /// Consume `input`, appending body bytes to `out` while the size stays within the
    /// limit (past it, bytes are counted and dropped so the client can finish).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            if self.pending_cr {
                if input[i] != b'\n' {
                    return DataProgress::BareLineEnding {
                        consumed: i,
                        lf: false,
                    };
                }
                i += 1;
                self.pending_cr = false;
                if self.dot_line && self.line_len == 0 {
                    return DataProgress::End { consumed: i };
                }
                self.push(out, b"\r\n");
                self.at_line_start = true;
                self.dot_line = false;
                self.line_len = 0;
                continue;
            }
            if self.at_line_start {
                self.at_line_start = false;
                if input[i] == b'.' {
                    self.dot_line = true;
                    i += 1;
                    continue;
                }
            }
            let rest = &input[i..];
            match memchr2(b'\r', b'\n', rest) {
                None => {
                    self.push(out, rest);
                    self.line_len += rest.len();
                    return DataProgress::NeedMore;
                }
                Some(pos) => {
                    self.push(out, &rest[..pos]);
                    self.line_len += pos;
                    if rest[pos] == b'\n' {
                        return DataProgress::BareLineEnding {
                            consumed: i + pos,
                            lf: true,
                        };
                    }
                    self.pending_cr = true;
                    i += pos + 1;
                }
            }
        }
        DataProgress::NeedMore
    }

    fn push(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let before = self.size;
        self.size += bytes.len();
        if self.size <= self.max_size {
            out.extend_from_slice(bytes);
        } else if before < self.max_size {
            out.extend_from_slice(&bytes[..self.max_size - before]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], max: usize) -> (Vec<u8>, DataProgress) {
        let mut r = DataReader::new(max);
        let mut out = Vec::new();
        let mut last = DataProgress::NeedMore;
        for c in chunks {
            last = r.feed(c, &mut out);
            if last != DataProgress::NeedMore {
                break;
            }
        }
        (out, last)
    }

    #[test]
    fn plain_message_and_unstuffing() {
        let (out, p) = read_all(&[b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\nNEXT"], 1000);
        assert_eq!(out, b"Subject: x\r\n\r\n.dot\r\nbody\r\n");
        assert_eq!(p, DataProgress::End { consumed: 30 });
    }

    #[test]
    fn end_split_across_every_boundary() {
        let msg = b"a\r\n.b\r\n.\r\n";
        for split in 0..msg.len() {
            let (out, p) = read_all(&[&msg[..split], &msg[split..]], 1000);
            assert_eq!(out, b"a\r\nb\r\n", "split {split}");
            assert!(matches!(p, DataProgress::End { .. }), "split {split}");
        }
    }

    #[test]
    fn empty_body() {
        let (out, p) = read_all(&[b".\r\n"], 10);
        assert!(out.is_empty());
        assert_eq!(p, DataProgress::End { consumed: 3 });
    }

    #[test]
    fn smuggling_variants_never_end_the_message() {
        // Every known end-of-data confusion: the reader must report a bare line ending,
        // never End, and must not have consumed past it.
        let variants: &[&[u8]] = &[
            b"x\n.\nMAIL FROM:<a@b>\r\n",
            b"x\r\n.\nMAIL FROM:<a@b>\r\n",
            b"x\n.\r\nMAIL FROM:<a@b>\r\n",
            b"x\r.\rMAIL FROM:<a@b>\r\n",
            b"x\r\n.\rMAIL FROM:<a@b>\r\n",
            b"x\r.\r\nMAIL FROM:<a@b>\r\n",
            b"x\r\n.\r\r\nMAIL\r\n",
            b"x\r\r\n.\r\n",
            b"x\n\r.\r\n",
        ];
        for v in variants {
            for split in 0..v.len() {
                let (_, p) = read_all(&[&v[..split], &v[split..]], 1000);
                assert!(
                    matches!(p, DataProgress::BareLineEnding { .. }),
                    "{:?} split {split}: {p:?}",
                    String::from_utf8_lossy(v)
                );
            }
        }
    }

    #[test]
    fn size_limit_counts_but_stops_storing() {
        let (out, p) = read_all(&[b"0123456789abc\r\n.\r\n"], 5);
        assert_eq!(out, b"01234");
        assert!(matches!(p, DataProgress::End { .. }));
        let mut r = DataReader::new(5);
        let mut o = Vec::new();
        r.feed(b"0123456789\r\n.\r\n", &mut o);
        assert!(r.too_big());
        assert_eq!(r.size(), 12);
    }
}
