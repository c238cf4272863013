//! A streaming zip writer: entries are stored (not compressed) and written as they come, each
//! followed by a data descriptor, so a file of any length is written without knowing its size
//! first and without seeking back. Memory holds the central directory (a name and three numbers
//! per entry), never an entry's bytes. Zip64 only for the entry count: an archive over 4 GiB is refused.

/// One entry of the central directory.
struct Entry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
    dir: bool,
}

/// The entry being written.
struct Open {
    name: String,
    crc: crc32fast::Hasher,
    size: u64,
    offset: u32,
}

/// Why the archive cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// The archive or an entry passed 4 GiB, which needs zip64.
    #[error(
        "the archive is larger than 4 GiB, which this export does not support; export fewer tasks at once"
    )]
    TooLarge,
}

/// Writes a zip archive to byte buffers the caller drains.
pub struct ZipStream {
    offset: u64,
    entries: Vec<Entry>,
    open: Option<Open>,
    dos_time: u16,
    dos_date: u16,
    /// The archive comment (in the end record).
    comment: Vec<u8>,
}

const VERSION: u16 = 20;
/// General purpose flags: bit 3 (sizes in a data descriptor) and bit 11 (UTF-8 names).
const FLAGS: u16 = (1 << 3) | (1 << 11);

impl ZipStream {
    /// An empty archive whose entries carry the given UTC time (`year`, `month`, `day`, `hour`,
    /// `minute`, `second`).
    pub fn new(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Self {
        let year = u16::try_from((year - 1980).clamp(0, 127)).unwrap_or(0);
        Self {
            offset: 0,
            entries: Vec::new(),
            open: None,
            dos_time: (u16::from(hour) << 11) | (u16::from(minute) << 5) | u16::from(second / 2),
            dos_date: (year << 9) | (u16::from(month) << 5) | u16::from(day),
            comment: Vec::new(),
        }
    }

    fn offset32(&self) -> Result<u32, ZipError> {
        u32::try_from(self.offset).map_err(|_| ZipError::TooLarge)
    }

    fn put(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    fn local_header(&mut self, name: &str, out: &mut Vec<u8>) {
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&FLAGS.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&[0; 12]); // crc and sizes follow in the data descriptor
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        self.put(out, &h);
    }

    /// Starts the file `name` (ends the one before, if any).
    pub fn begin(&mut self, name: &str, out: &mut Vec<u8>) -> Result<(), ZipError> {
        self.end(out)?;
        let offset = self.offset32()?;
        self.local_header(name, out);
        self.open = Some(Open {
            name: name.to_string(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            offset,
        });
        Ok(())
    }

    /// Appends bytes to the open file.
    pub fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(open) = self.open.as_mut() {
            open.crc.update(bytes);
            open.size += bytes.len() as u64;
        }
        self.put(out, bytes);
    }

    /// Ends the open file, if any.
    pub fn end(&mut self, out: &mut Vec<u8>) -> Result<(), ZipError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let size = u32::try_from(open.size).map_err(|_| ZipError::TooLarge)?;
        let crc = open.crc.finalize();
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        self.put(out, &d);
        self.entries.push(Entry {
            name: open.name,
            crc,
            size,
            offset: open.offset,
            dir: false,
        });
        Ok(())
    }

    /// A whole file at once.
    pub fn file(&mut self, name: &str, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ZipError> {
        self.begin(name, out)?;
        self.write(bytes, out);
        self.end(out)
    }

    /// A directory entry (`name` ends with `/`).
    pub fn dir(&mut self, name: &str, out: &mut Vec<u8>) -> Result<(), ZipError> {
        self.end(out)?;
        let offset = self.offset32()?;
        self.local_header(name, out);
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&[0; 12]);
        self.put(out, &d);
        self.entries.push(Entry {
            name: name.to_string(),
            crc: 0,
            size: 0,
            offset,
            dir: true,
        });
        Ok(())
    }

    /// Sets the archive comment (cut at the 65535 bytes the end record can hold).
    pub fn comment(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.truncate(usize::from(u16::MAX));
        self.comment = bytes;
    }

    /// Ends the archive: the central directory and its end record.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), ZipError> {
        self.end(out)?;
        let start = self.offset32()?;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut c = Vec::with_capacity(46 + e.name.len());
            c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            c.extend_from_slice(&(0x0300 | VERSION).to_le_bytes()); // made by: Unix
            c.extend_from_slice(&VERSION.to_le_bytes());
            c.extend_from_slice(&FLAGS.to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes());
            c.extend_from_slice(&self.dos_time.to_le_bytes());
            c.extend_from_slice(&self.dos_date.to_le_bytes());
            c.extend_from_slice(&e.crc.to_le_bytes());
            c.extend_from_slice(&e.size.to_le_bytes());
            c.extend_from_slice(&e.size.to_le_bytes());
            c.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            c.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
            let mode: u32 = if e.dir { 0o40755 } else { 0o100644 };
            let external = (mode << 16) | if e.dir { 0x10 } else { 0 };
            c.extend_from_slice(&external.to_le_bytes());
            c.extend_from_slice(&e.offset.to_le_bytes());
            c.extend_from_slice(e.name.as_bytes());
            self.put(out, &c);
        }
        let size = u32::try_from(self.offset - u64::from(start)).map_err(|_| ZipError::TooLarge)?;
        // More than 65535 entries (a YOLO export of a large project) need the zip64 end record,
        // which carries the count in 64 bits; sizes and offsets still fit the classic fields.
        let count = match u16::try_from(entries.len()) {
            Ok(n) if n < u16::MAX => n,
            _ => {
                let record = self.offset;
                let n = entries.len() as u64;
                let mut z = Vec::with_capacity(76);
                z.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
                z.extend_from_slice(&44u64.to_le_bytes());
                z.extend_from_slice(&(0x0300 | 45u16).to_le_bytes());
                z.extend_from_slice(&45u16.to_le_bytes());
                z.extend_from_slice(&[0; 8]); // this disk, the central directory's disk
                z.extend_from_slice(&n.to_le_bytes());
                z.extend_from_slice(&n.to_le_bytes());
                z.extend_from_slice(&u64::from(size).to_le_bytes());
                z.extend_from_slice(&u64::from(start).to_le_bytes());
                z.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
                z.extend_from_slice(&0u32.to_le_bytes());
                z.extend_from_slice(&record.to_le_bytes());
                z.extend_from_slice(&1u32.to_le_bytes());
                self.put(out, &z);
                u16::MAX
            }
        };
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0; 4]);
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&size.to_le_bytes());
        end.extend_from_slice(&start.to_le_bytes());
        end.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        end.extend_from_slice(&self.comment);
        self.put(out, &end);
        Ok(())
    }
}
