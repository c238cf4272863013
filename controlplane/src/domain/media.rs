//! What exports read from media files themselves: the duration of a WAV recording from its
//! header (the ASR manifest). Pure: the caller reads the file's first bytes.

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
}
