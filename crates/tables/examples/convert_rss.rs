//! Peak memory and speed of the conversion, by CSV size.
//!
//! ```text
//! cargo run --release -p tables --example convert_rss                  # 10 MiB, 100 MiB, 1 GiB
//! cargo run --release -p tables --example convert_rss -- 200 --emulator # sizes in MiB; the emulator's files
//! convert_rss --generate 100 report.csv [--emulator]   # only write a 100 MiB CSV (for other tools)
//! convert_rss --file report.csv                        # convert one file from disk
//! convert_rss --file report.csv --out report.parquet   # ... and write the Parquet file
//! ```
//!
//! The CSV is a `balance_change_from_activity.itemized.3` report: by default
//! this crate's test generator (66 columns, about 670 bytes a row, quoted
//! text with commas, quotes, line breaks and non-ASCII letters, see
//! `tests/support/report_csv.rs`); with `--emulator`, the Stripe
//! emulator's file of the documented default columns. It is generated as it
//! is read (no disk), in a fresh process per size, and converted to Parquet
//! written to a byte counter (`--file` with `--out` writes a real file, as
//! `make bench` does to compare with DuckDB's `COPY … (FORMAT parquet)`). The process reports its peak resident set
//! (`VmHWM`) and the conversion's CPU time: the generator's own CPU time,
//! measured by a first pass, is subtracted, and CPU time rather than wall
//! time is the speed that holds on a busy machine.
//!
//! `TABLES_BATCH_ROWS`, `TABLES_ROW_GROUP_MIB` and `TABLES_ZSTD_LEVEL`
//! override [`ConvertOptions::default`] to try other settings.

#[path = "../tests/support/report_csv.rs"]
mod report_csv;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::process::Command;
use std::time::Instant;

use tables::{ConvertOptions, convert};

const MIB: u64 = 1024 * 1024;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime are the 14th and 15th fields, in clock ticks (100 a
    // second on Linux); count from after the command's closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn options_from_env() -> ConvertOptions {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let mut options = ConvertOptions::default();
    if let Some(rows) = var("TABLES_BATCH_ROWS") {
        options.batch_rows = rows;
    }
    if let Some(mib) = var("TABLES_ROW_GROUP_MIB") {
        options.row_group_bytes = mib * MIB as usize;
    }
    if let Some(level) = var("TABLES_ZSTD_LEVEL") {
        options.zstd_level = level as i32;
    }
    options
}

/// The emulator's file as a reader.
struct EmulatorCsv {
    generator: stripe_emulator::csv::CsvGenerator,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for EmulatorCsv {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.generator.next_chunk() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn source(mib: u64, emulator: bool) -> Box<dyn Read> {
    if emulator {
        let report_type = "balance_change_from_activity.itemized.3";
        let columns = stripe_emulator::report_columns::default_columns(report_type, None);
        let spec = stripe_emulator::csv::FileSpec::new(42, mib * MIB, report_type, columns);
        Box::new(EmulatorCsv {
            generator: stripe_emulator::csv::CsvGenerator::new(spec),
            chunk: Vec::new(),
            pos: 0,
        })
    } else {
        Box::new(report_csv::ReportCsv::new(42, mib * MIB, false))
    }
}

/// Counts what is written to it.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn report(
    label: &str,
    bytes: u64,
    seconds: f64,
    cpu: f64,
    converted: &tables::Converted,
    before_kib: u64,
) {
    let mib = bytes as f64 / MIB as f64;
    println!(
        "{label:>8} {mib:>7.0} MiB CSV | {:>9} rows | {:>6.1} MiB/s of CPU ({cpu:.2} s; {seconds:.2} s wall) | peak RSS {:>5.1} MiB (at start {:>4.1}) | Parquet {:>6.1} MiB, {} row groups",
        converted.rows,
        mib / cpu,
        vm_hwm_kib() as f64 / 1024.0,
        before_kib as f64 / 1024.0,
        converted.parquet_bytes as f64 / MIB as f64,
        converted.row_groups,
    );
}

/// In the child: generate once to measure the generator, then convert.
fn measure(mib: u64, emulator: bool) -> Result<(), Box<dyn std::error::Error>> {
    let before = vm_hwm_kib();
    let started = cpu_seconds();
    let bytes = std::io::copy(&mut source(mib, emulator), &mut std::io::sink())?;
    let generating = cpu_seconds() - started;
    let wall = Instant::now();
    let started = cpu_seconds();
    let (converted, _) = convert(
        source(mib, emulator),
        Counter::default(),
        &options_from_env(),
    )?;
    let seconds = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - started - generating;
    let label = if emulator { "emulator" } else { "tests" };
    report(label, bytes, seconds, cpu, &converted, before);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let emulator = args.iter().any(|a| a == "--emulator");
    args.retain(|a| a != "--emulator");
    match args.first().map(String::as_str) {
        Some("--measure") => return measure(args[1].parse()?, emulator),
        Some("--generate") => {
            let mut out = BufWriter::new(File::create(&args[2])?);
            let bytes = std::io::copy(&mut source(args[1].parse()?, emulator), &mut out)?;
            out.flush()?;
            println!("{bytes} bytes");
            return Ok(());
        }
        Some("--file") => {
            let before = vm_hwm_kib();
            let input = File::open(&args[1])?;
            let bytes = input.metadata()?.len();
            let out = match args.get(2).map(String::as_str) {
                Some("--out") => Some(args.get(3).ok_or("--out needs a path")?),
                Some(other) => return Err(format!("unexpected argument {other:?}").into()),
                None => None,
            };
            let wall = Instant::now();
            let started = cpu_seconds();
            let converted = match out {
                Some(path) => {
                    let (converted, mut file) = convert(
                        input,
                        BufWriter::new(File::create(path)?),
                        &options_from_env(),
                    )?;
                    file.flush()?;
                    converted
                }
                None => convert(input, Counter::default(), &options_from_env())?.0,
            };
            let cpu = cpu_seconds() - started;
            report(
                "file",
                bytes,
                wall.elapsed().as_secs_f64(),
                cpu,
                &converted,
                before,
            );
            return Ok(());
        }
        _ => {}
    }
    let sizes: Vec<u64> = if args.is_empty() {
        vec![10, 100, 1024]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    for mib in sizes {
        let mut child = Command::new(std::env::current_exe()?);
        child.arg("--measure").arg(mib.to_string());
        if emulator {
            child.arg("--emulator");
        }
        if !child.status()?.success() {
            return Err(format!("converting {mib} MiB failed").into());
        }
    }
    Ok(())
}
