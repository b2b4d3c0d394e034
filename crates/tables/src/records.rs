//! CSV records from any reader, each with the 1-based line of the file it
//! starts on, in bounded memory: a fixed input buffer and one record's
//! fields at a time.
//!
//! Parsing is `csv_core`'s (RFC 4180: `,` between fields, `"` quoting with
//! `""` for a quote, line breaks inside quotes; LF, CR or CRLF ends a record).
//! Lines are counted here rather than taken from the `csv` crate, whose
//! record positions lag by one after a CRLF or a blank line. Blank lines are
//! skipped, and a leading UTF-8 byte order mark is dropped.

use std::io::{self, Read};

use csv_core::{ReadRecordResult, Reader};

const INPUT_BUFFER: usize = 64 * 1024;

/// One CSV record: its fields' bytes, unquoted.
#[derive(Debug, Default)]
pub struct Record {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
    line: u64,
}

impl Record {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 1-based line of the file on which the record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Field `i` (panics past [`len`](Self::len), as slicing does).
    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn fields(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len).map(|i| self.field(i))
    }
}

/// Reads [`Record`]s one after the other.
pub struct Records<R> {
    inner: R,
    parser: Reader,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// Line of the next unread byte.
    line: u64,
    bom_checked: bool,
}

impl<R: Read> Records<R> {
    pub fn new(inner: R) -> Self {
        Records {
            inner,
            parser: Reader::new(),
            buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            line: 1,
            bom_checked: false,
        }
    }

    /// The line of the next unread byte (where an I/O error happened).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Makes input available; `false` at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        while self.start == self.end && !self.eof {
            self.start = 0;
            self.end = 0;
            // The first time, read at least 3 bytes, to see a BOM whole.
            let want = if self.bom_checked { 1 } else { 3 };
            while self.end < want {
                let n = loop {
                    match self.inner.read(&mut self.buf[self.end..]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                if n == 0 {
                    self.eof = true;
                    break;
                }
                self.end += n;
            }
            if !self.bom_checked {
                self.bom_checked = true;
                if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                    self.start = 3;
                }
            }
        }
        Ok(self.start < self.end)
    }

    /// Reads the next record into `record`; `false` at the end of the input.
    pub fn read(&mut self, record: &mut Record) -> io::Result<bool> {
        // Skip line breaks between records (blank lines, and the LF of a CRLF).
        loop {
            if !self.fill()? {
                return Ok(false);
            }
            let input = &self.buf[self.start..self.end];
            let skip = input
                .iter()
                .position(|&b| b != b'\n' && b != b'\r')
                .unwrap_or(input.len());
            self.line += count_newlines(&input[..skip]);
            self.start += skip;
            if self.start < self.end {
                break;
            }
        }
        record.line = self.line;
        record.len = 0;
        if record.bytes.is_empty() {
            record.bytes.resize(1024, 0);
        }
        if record.ends.is_empty() {
            record.ends.resize(64, 0);
        }
        let (mut out, mut nends) = (0, 0);
        loop {
            let available = self.fill()?;
            let input: &[u8] = if available {
                &self.buf[self.start..self.end]
            } else {
                &[]
            };
            let (result, nin, nout, nend) =
                self.parser
                    .read_record(input, &mut record.bytes[out..], &mut record.ends[nends..]);
            self.line += count_newlines(&input[..nin]);
            self.start += nin;
            out += nout;
            nends += nend;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = record.bytes.len();
                    record.bytes.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = record.ends.len();
                    record.ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record => {
                    record.len = nends;
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut records = Records::new(input);
        let mut record = Record::default();
        let mut out = Vec::new();
        while records.read(&mut record).unwrap() {
            out.push((
                record.line(),
                record
                    .fields()
                    .map(|f| String::from_utf8(f.to_vec()).unwrap())
                    .collect(),
            ));
        }
        out
    }

    #[test]
    fn records_know_the_line_they_start_on() {
        let got = all(b"\xEF\xBB\xBFa,b\r\n1,\"x\r\ny\"\r\n\r\n2,\"\"\"q\"\"\"\r\n\n3,z");
        assert_eq!(
            got,
            [
                (1, vec!["a".into(), "b".into()]),
                (2, vec!["1".into(), "x\r\ny".into()]),
                (5, vec!["2".into(), "\"q\"".into()]),
                (7, vec!["3".into(), "z".into()]),
            ]
        );
        assert!(all(b"").is_empty());
        assert!(all(b"\n\r\n").is_empty());
    }

    #[test]
    fn long_fields_and_many_fields_grow_the_record() {
        let long = "é".repeat(50_000);
        let many = vec!["f"; 500].join(",");
        let input = format!("\"{long}\",x\n{many}\n");
        let got = all(input.as_bytes());
        assert_eq!(got[0].1[0], long);
        assert_eq!(got[1].1.len(), 500);
        assert_eq!(got[1].0, 2);
    }

    /// A reader that hands out one byte at a time: every boundary is crossed.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_byte_at_a_time_gives_the_same_records() {
        let input = b"\xEF\xBB\xBFa,b\r\n1,\"x\r\ny\"\r\n\r\n2,\"\"\"q\"\"\"\r\n\n3,z";
        let mut records = Records::new(Trickle(input));
        let mut record = Record::default();
        let mut lines = Vec::new();
        while records.read(&mut record).unwrap() {
            lines.push((record.line(), record.len()));
        }
        assert_eq!(lines, [(1, 2), (2, 2), (5, 2), (7, 2)]);
    }
}
