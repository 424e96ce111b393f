//! Feeds the DATA body reader the same bytes in one piece and in arbitrary pieces: the
//! outcome (body, end or bare line ending, and where) must not depend on how the bytes
//! were split, and a body within the size limit never holds a bare CR or a bare LF.
//!
//! Input layout: byte 0 picks the size limit (0..=255, or unlimited when 255), byte 1
//! seeds the split points (low 4 bits: pieces - 1), the rest is the DATA stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_smtp::data::{DataProgress, DataReader};

/// Feed `chunks` until the reader reports something other than NeedMore; the result
/// with `consumed` made absolute, the body, and the reader's size and too_big.
fn run(chunks: &[&[u8]], max: usize) -> (DataProgress, Vec<u8>, usize, bool) {
    let mut reader = DataReader::new(max);
    let mut out = Vec::new();
    let mut offset = 0;
    let mut progress = DataProgress::NeedMore;
    for chunk in chunks {
        progress = match reader.feed(chunk, &mut out) {
            DataProgress::NeedMore => {
                offset += chunk.len();
                DataProgress::NeedMore
            }
            DataProgress::End { consumed } => {
                assert!(consumed <= chunk.len(), "End past the input");
                DataProgress::End {
                    consumed: offset + consumed,
                }
            }
            DataProgress::BareLineEnding { consumed, lf } => {
                assert!(consumed < chunk.len(), "bare line ending past the input");
                DataProgress::BareLineEnding {
                    consumed: offset + consumed,
                    lf,
                }
            }
        };
        if progress != DataProgress::NeedMore {
            break;
        }
    }
    let (size, too_big) = (reader.size(), reader.too_big());
    (progress, out, size, too_big)
}

fn no_bare_line_endings(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => body.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && body[i - 1] == b'\r',
        _ => true,
    })
}

fn split(data: &[u8], n: usize, seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9) | 1;
    let mut cuts: Vec<usize> = (1..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as usize) % (data.len() + 1)
        })
        .collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let max = if input[0] == 255 { usize::MAX } else { usize::from(input[0]) };
    let data = &input[2..];

    let whole = run(&[data], max);
    let pieces = split(data, usize::from(input[1] & 15) + 1, input[1] >> 4);
    let chunked = run(&pieces, max);
    assert_eq!(whole, chunked, "outcome depends on chunking ({} pieces)", pieces.len());
    // Byte at a time, the worst case for state carried between calls.
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(whole, run(&bytes, max), "outcome differs byte at a time");

    let (progress, out, size, too_big) = whole;
    assert_eq!(too_big, size > max);
    assert!(out.len() <= max, "stored past the limit");
    assert!(size <= data.len(), "counted more than was fed");
    if !too_big {
        assert_eq!(out.len(), size, "dropped bytes within the limit");
        assert!(
            no_bare_line_endings(&out),
            "bare CR or LF in the body: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    match progress {
        DataProgress::End { consumed } => {
            assert!(consumed >= 3 && data[..consumed].ends_with(b".\r\n"), "End not after .CRLF");
            assert!(consumed == 3 || data[..consumed].ends_with(b"\r\n.\r\n"), "End not at a line start");
            if !too_big {
                assert!(out.is_empty() || out.ends_with(b"\r\n"), "body not CRLF-terminated");
            }
        }
        DataProgress::BareLineEnding { consumed, lf } => {
            let b = data[consumed];
            assert!((b == b'\n' && lf) || (!lf && b != b'\n' && consumed > 0 && data[consumed - 1] == b'\r'),
                "wrong bare line ending at {consumed}");
        }
        DataProgress::NeedMore => {}
    }
});
