//! What exports read from media files themselves: the duration of a WAV recording from its
//! header (the ASR manifest), the width and height of an image from its header (COCO with
//! images). Pure: the caller reads the file's first bytes.

/// Bytes of a file's beginning to read for [`wav_duration`]: the `fmt ` and the start of the
/// `data` chunk sit in the first few hundred bytes of a WAV file; metadata chunks before them
/// rarely take more.
pub const WAV_HEAD: usize = 256 * 1024;

/// The duration in seconds of a PCM WAV file from its first bytes, as Python's `wave` module
/// computes it (frames in the `data` chunk over the frame rate); `None` for anything else (not
/// RIFF/WAVE, not PCM, `data` before `fmt `, or the chunks past `head`).
pub fn wav_duration(head: &[u8]) -> Option<f64> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(head.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(head.get(i..i + 4)?.try_into().ok()?));
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    let mut format: Option<(u16, u32, u16)> = None;
    loop {
        let id = head.get(at..at + 4)?;
        let size = u32_at(at + 4)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                // Python 3.11's wave reads only WAVE_FORMAT_PCM (1).
                if u16_at(body)? != 1 {
                    return None;
                }
                let channels = u16_at(body + 2)?;
                let rate = u32_at(body + 4)?;
                let bits = u16_at(body + 14)?;
                format = Some((channels, rate, bits.div_ceil(8)));
            }
            b"data" => {
                let (channels, rate, width) = format?;
                let frame = u64::from(channels) * u64::from(width);
                if frame == 0 || rate == 0 {
                    return None;
                }
                return Some((size as u64 / frame) as f64 / f64::from(rate));
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
}

/// The width and height of a PNG, JPEG, GIF, BMP or WebP image from its first bytes, as PIL's
/// `Image.size` gives them (the stored size: EXIF orientation is not applied); `None` for
/// other formats or when the size lies past `head`.
pub fn image_size(head: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| {
        Some(u32::from(u16::from_be_bytes(
            head.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let le16 = |i: usize| {
        Some(u32::from(u16::from_le_bytes(
            head.get(i..i + 2)?.try_into().ok()?,
        )))
    };
    let be32 = |i: usize| Some(u32::from_be_bytes(head.get(i..i + 4)?.try_into().ok()?));
    let le32 = |i: usize| Some(u32::from_le_bytes(head.get(i..i + 4)?.try_into().ok()?));
    if head.starts_with(b"\x89PNG\r\n\x1a\n") && head.get(12..16)? == b"IHDR" {
        return Some((be32(16)?, be32(20)?));
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Some((le16(6)?, le16(8)?));
    }
    if head.starts_with(b"BM") {
        // BITMAPCOREHEADER (12 bytes) has 16-bit sizes; the others 32-bit, height signed.
        if le32(14)? == 12 {
            return Some((le16(18)?, le16(20)?));
        }
        let height = i32::from_le_bytes(head.get(22..26)?.try_into().ok()?);
        return Some((le32(18)?, height.unsigned_abs()));
    }
    if head.starts_with(b"RIFF") && head.get(8..12)? == b"WEBP" {
        return match head.get(12..16)? {
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let bits = le32(21)?;
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => {
                let w = le32(24)? & 0xff_ffff;
                let h = le32(27)? & 0xff_ffff;
                Some((w + 1, h + 1))
            }
            _ => None,
        };
    }
    if head.starts_with(&[0xff, 0xd8]) {
        let mut at = 2usize;
        loop {
            // Fill bytes may precede a marker.
            while *head.get(at)? == 0xff && *head.get(at + 1)? == 0xff {
                at += 1;
            }
            if *head.get(at)? != 0xff {
                return None;
            }
            let marker = *head.get(at + 1)?;
            match marker {
                // Markers without a length.
                0x01 | 0xd0..=0xd7 => at += 2,
                // Start of frame (not DHT c4, JPG c8, DAC cc): height then width.
                0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                    return Some((be16(at + 7)?, be16(at + 5)?));
                }
                0xd9 | 0xda => return None,
                _ => at += 2 + usize::try_from(be16(at + 2)?).ok()?,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(channels: u16, rate: u32, bits: u16, frames: u32, extra: &[u8]) -> Vec<u8> {
        let width = u32::from(bits.div_ceil(8));
        let data = frames * u32::from(channels) * width;
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(4 + 24 + extra.len() as u32 + 8 + data).to_le_bytes());
        w.extend_from_slice(b"WAVE");
        w.extend_from_slice(extra);
        w.extend_from_slice(b"fmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&channels.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * u32::from(channels) * width).to_le_bytes());
        w.extend_from_slice(&(channels * width as u16).to_le_bytes());
        w.extend_from_slice(&bits.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data.to_le_bytes());
        w.resize(w.len() + data as usize, 0);
        w
    }

    #[test]
    fn reads_pcm_durations() {
        assert_eq!(wav_duration(&wav(1, 8000, 16, 12000, &[])), Some(1.5));
        assert_eq!(wav_duration(&wav(2, 44100, 8, 44100, &[])), Some(1.0));
        // A LIST chunk of odd size before fmt: skipped with its pad byte.
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc\0"].concat();
        assert_eq!(wav_duration(&wav(1, 16000, 16, 4000, &list)), Some(0.25));
        // Only the header is needed.
        assert_eq!(wav_duration(&wav(1, 8000, 16, 8000, &[])[..44]), Some(1.0));
    }

    #[test]
    fn refuses_what_python_refuses() {
        let mut float = wav(1, 8000, 32, 10, &[]);
        float[20] = 3; // WAVE_FORMAT_IEEE_FLOAT
        assert_eq!(wav_duration(&float), None);
        assert_eq!(wav_duration(b"ID3\x04 not a wav file"), None);
        assert_eq!(wav_duration(&wav(1, 8000, 16, 10, &[])[..30]), None);
    }

    #[test]
    fn reads_image_sizes_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(image_size(&png), Some((640, 480)));
        assert_eq!(image_size(&png[..20]), None);
        // JPEG: an APP0 segment, then a baseline frame header (height 3, width 5).
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xc0, 0, 11, 8, 0, 3, 0, 5, 1, 1, 0x11, 0,
        ];
        assert_eq!(image_size(&jpeg), Some((5, 3)));
        let gif = b"GIF89a\x07\0\x09\0";
        assert_eq!(image_size(gif), Some((7, 9)));
        let mut bmp = b"BM".to_vec();
        bmp.resize(14, 0);
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&12u32.to_le_bytes());
        bmp.extend_from_slice(&(-34i32).to_le_bytes());
        assert_eq!(image_size(&bmp), Some((12, 34)));
        assert_eq!(image_size(b"not an image"), None);
    }
}
