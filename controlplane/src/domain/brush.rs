//! Label Studio's brush masks: decoding the bit-packed run-length encoding the editor stores in
//! `BrushLabels` results (`"format": "rle"`) and writing a mask as a NumPy `.npy` file or an
//! 8-bit grayscale PNG. Pure: bytes in, bytes out; memory holds one mask (width × height bytes),
//! never the four-channel image the RLE describes.

use std::io::Write;

/// Why a brush region cannot be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RleError {
    /// The bit stream ended before the values it announced.
    #[error("the RLE ends after {0} of its values")]
    Truncated(u64),
    /// The RLE does not describe a four-channel image of the region's size.
    #[error("the RLE holds {found} values, not {expected} (width × height × 4)")]
    Size {
        /// Values announced by the RLE.
        found: u64,
        /// `original_width × original_height × 4`.
        expected: u64,
    },
}

/// Reads bits most significant first, as the editor's encoder (thi.ng `rle-pack`) writes them.
struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let byte = *self.bytes.get(self.pos / 8)?;
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// Decodes an RLE into the alpha channel of the RGBA image it holds: the region's mask,
/// `height` rows of `width` bytes. Values wider than 8 bits keep their low byte, as a NumPy
/// `uint8` array does.
///
/// The format: 32 bits value count, 5 bits word size − 1, four 4-bit run-length sizes − 1;
/// then runs: 1 bit repeat flag, 2 bits choosing a run-length size, the run length − 1 in that
/// many bits, then one word repeated (flag set) or that many words.
pub fn decode_alpha(rle: &[u8], width: u64, height: u64) -> Result<Vec<u8>, RleError> {
    let mut bits = Bits { bytes: rle, pos: 0 };
    let header = (|| {
        let num = bits.read(32)?;
        let word = bits.read(5)? + 1;
        let mut sizes = [0u32; 4];
        for s in &mut sizes {
            *s = bits.read(4)? + 1;
        }
        Some((u64::from(num), word, sizes))
    })();
    let Some((num, word, sizes)) = header else {
        return Err(RleError::Truncated(0));
    };
    let expected = width.saturating_mul(height).saturating_mul(4);
    if num != expected {
        return Err(RleError::Size {
            found: num,
            expected,
        });
    }
    let mut mask = Vec::with_capacity(usize::try_from(width * height).unwrap_or(0));
    let mut i: u64 = 0;
    let put = |i: u64, v: u32, mask: &mut Vec<u8>| {
        if i % 4 == 3 {
            mask.push(v as u8);
        }
    };
    while i < num {
        let run = (|| {
            let repeat = bits.read(1)? == 1;
            let size = sizes[bits.read(2)? as usize];
            let len = u64::from(bits.read(size)?) + 1;
            Some((repeat, len))
        })();
        let Some((repeat, len)) = run else {
            return Err(RleError::Truncated(i));
        };
        let end = (i + len).min(num);
        if repeat {
            let v = bits.read(word).ok_or(RleError::Truncated(i))?;
            while i < end {
                put(i, v, &mut mask);
                i += 1;
            }
        } else {
            while i < end {
                let v = bits.read(word).ok_or(RleError::Truncated(i))?;
                put(i, v, &mut mask);
                i += 1;
            }
        }
    }
    Ok(mask)
}

/// NumPy's `.npy` header (format 1.0) of a C-ordered `uint8` array of `height` × `width`, as
/// `numpy.save` writes it: the magic, the version, the header length, the dictionary padded
/// with spaces (room for the first axis to grow to 21 digits) and a newline to a multiple of
/// 64 bytes.
pub fn npy_header(height: u64, width: u64) -> Vec<u8> {
    let mut dict =
        format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({height}, {width}), }}");
    let digits = height.to_string().len();
    dict.push_str(&" ".repeat(21usize.saturating_sub(digits)));
    // magic (6) + version (2) + length (2) + dict + newline, padded to 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// An 8-bit grayscale PNG of a mask (`height` rows of `width` bytes), as PIL saves a `uint8`
/// array (mode `L`): no filter, zlib-compressed in one `IDAT` chunk.
pub fn png_gray(mask: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(mask.len() / 8 + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // bit depth 8, colour type 0 (grayscale), deflate, adaptive filtering, no interlace
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(b"IHDR", &ihdr, &mut out);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let row = width as usize;
    if row > 0 {
        for line in mask.chunks(row) {
            // Writing to a Vec cannot fail.
            let _ = z.write_all(&[0]);
            let _ = z.write_all(line);
        }
    } else {
        for _ in 0..height {
            let _ = z.write_all(&[0]);
        }
    }
    let idat = z.finish().unwrap_or_default();
    png_chunk(b"IDAT", &idat, &mut out);
    png_chunk(b"IEND", &[], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test encoder of the RLE format (every run a repeat with the 16-bit size, or single
    /// literal words), independent of the decoder.
    fn encode(values: &[u8]) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        let push = |v: u64, n: u32, bits: &mut Vec<bool>| {
            for k in (0..n).rev() {
                bits.push((v >> k) & 1 == 1);
            }
        };
        push(values.len() as u64, 32, &mut bits);
        push(7, 5, &mut bits); // 8-bit words
        for s in [3u64, 4, 8, 16] {
            push(s - 1, 4, &mut bits);
        }
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j < values.len() && values[j] == values[i] && j - i < 65536 {
                j += 1;
            }
            if j - i == 1 {
                push(0, 1, &mut bits);
                push(0, 2, &mut bits); // 3-bit length
                push(0, 3, &mut bits);
                push(u64::from(values[i]), 8, &mut bits);
            } else {
                push(1, 1, &mut bits);
                push(3, 2, &mut bits); // 16-bit length
                push((j - i - 1) as u64, 16, &mut bits);
                push(u64::from(values[i]), 8, &mut bits);
            }
            i = j;
        }
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (k, bit)| b | (u8::from(*bit) << (7 - k)))
            })
            .collect()
    }

    #[test]
    fn decodes_what_was_encoded() {
        let (w, h) = (37u64, 5u64);
        let mask: Vec<u8> = (0..w * h)
            .map(|i| if (i / 7) % 3 == 0 { 255 } else { (i % 5) as u8 })
            .collect();
        let rgba: Vec<u8> = mask.iter().flat_map(|a| [1, 2, 3, *a]).collect();
        assert_eq!(decode_alpha(&encode(&rgba), w, h), Ok(mask));
    }

    #[test]
    fn decodes_the_converters_published_mask() {
        // `label_studio_sdk.converter.brush.mask2rle` of [[0,255,255,0],[0,0,255,0],[255,0,0,0]].
        let rle = [
            0, 0, 0, 48, 57, 27, 252, 96, 19, 255, 219, 0, 143, 254, 48, 8, 255, 237, 128, 0,
        ];
        assert_eq!(
            decode_alpha(&rle, 4, 3),
            Ok(vec![0, 255, 255, 0, 0, 0, 255, 0, 255, 0, 0, 0])
        );
        assert_eq!(
            decode_alpha(&rle, 3, 3),
            Err(RleError::Size {
                found: 48,
                expected: 36
            })
        );
        assert!(matches!(
            decode_alpha(&rle[..12], 4, 3),
            Err(RleError::Truncated(n)) if n > 0 && n < 48
        ));
        assert_eq!(decode_alpha(&rle[..3], 4, 3), Err(RleError::Truncated(0)));
    }

    #[test]
    fn npy_header_is_what_numpy_writes() {
        let h = npy_header(3, 5);
        assert_eq!(h.len(), 128);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]), 118);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 5), }"));
        assert!(text.ends_with(" \n"));
        assert_eq!(npy_header(3000, 12345).len(), 128);
        assert_eq!(npy_header(12_345_678_901, 2).len() % 64, 0);
    }

    #[test]
    fn png_holds_the_mask() {
        let mask: Vec<u8> = vec![0, 255, 255, 0, 0, 0, 255, 0, 255, 0, 0, 0];
        let png = png_gray(&mask, 4, 3);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width, height, depth 8, grayscale.
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 4);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 3);
        assert_eq!(&png[24..26], &[8, 0]);
        // IDAT inflates to the rows, each behind filter byte 0.
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut rows = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&png[41..41 + len]),
            &mut rows,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![0, 0, 255, 255, 0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0]
        );
        // Every chunk's CRC covers its type and data.
        let crc = u32::from_be_bytes(png[41 + len..45 + len].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&png[37..41 + len]));
        assert!(png.ends_with(b"IEND\xaeB`\x82"));
    }
}
