//! Storage benchmark: the partition log against the raw disk and memory.
//!
//! - **append**: 1 KiB records in ~64 KiB batches appended to a `Log`, then
//!   flushed, versus plain `write` + `fdatasync` of the same byte count in the
//!   same chunk sizes, to a file in the same directory. Two flush modes:
//!   `end` (one `fdatasync` after all the data, the log's group commit with
//!   the OS policy) and `every` (one `fdatasync` per batch on both sides).
//! - **read**: a warm (page-cached, already mapped) partition read from start
//!   to end with `Log::read`, each returned slice copied once into a
//!   destination buffer as a socket write would, versus a `memcpy` of the
//!   same bytes from an in-memory buffer into the same destination.
//!
//! Runs alternate A and B several times and print the median of each and the
//! median of the per-pair ratios.
//!
//! ```text
//! cargo run --release -p fjord-benches --bin storage_bench -- --dir target/bench-data
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use fjord_benches::stats::{median, mib_per_s};
use fjord_storage::{BatchBuilder, Compression, FlushPolicy, Log, LogConfig, Record};

#[derive(Parser, Debug)]
#[command(about = "Append and read throughput of the Fjord partition log")]
struct Args {
    /// Directory on the disk to measure (a temporary directory is made in it).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Bytes appended per append run.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Bytes appended per run in the fsync-every-batch mode.
    #[arg(long, default_value_t = 32 << 20)]
    every_bytes: u64,
    /// Record value size.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per batch (64 x 1 KiB = ~64 KiB batches).
    #[arg(long, default_value_t = 64)]
    batch_records: usize,
    /// Counted A/B pairs per figure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let scratch = tempfile::tempdir_in(&args.dir).context("make scratch directory")?;
    let batch = build_batch(args.record_size, args.batch_records)?;
    println!(
        "batch: {} records x {} B = {} B on disk; runs: {}",
        args.batch_records,
        args.record_size,
        batch.len(),
        args.runs
    );

    append_figure(&args, scratch.path(), &batch, FlushMode::End)?;
    append_figure(&args, scratch.path(), &batch, FlushMode::Every)?;
    read_figure(&args, scratch.path(), &batch)?;
    Ok(())
}

fn build_batch(record_size: usize, records: usize) -> Result<Bytes> {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let value: Vec<u8> = (0..record_size)
            .map(|j| ((i * 31 + j) % 251) as u8)
            .collect();
        builder.add(Record::new(
            None,
            Some(Bytes::from(value)),
            1_700_000_000_000,
        ));
    }
    Ok(builder.build()?)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlushMode {
    /// One fdatasync after everything.
    End,
    /// One fdatasync per batch.
    Every,
}

fn append_figure(args: &Args, dir: &Path, batch: &Bytes, mode: FlushMode) -> Result<()> {
    let total = match mode {
        FlushMode::End => args.bytes,
        FlushMode::Every => args.every_bytes,
    };
    let batches = (total / batch.len() as u64).max(1);
    let bytes = batches * batch.len() as u64;
    let (mut log_rates, mut raw_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=args.runs {
        let log_s = append_log(&dir.join(format!("log-{run}")), batch, batches, mode)?;
        let raw_s = append_raw(&dir.join(format!("raw-{run}")), batch, batches, mode)?;
        if run == 0 {
            continue; // warm-up pair
        }
        log_rates.push(mib_per_s(bytes, log_s));
        raw_rates.push(mib_per_s(bytes, raw_s));
        ratios.push(raw_s / log_s);
    }
    let label = match mode {
        FlushMode::End => "append, fdatasync at end ",
        FlushMode::Every => "append, fdatasync / batch",
    };
    println!(
        "{label}: log {:8.1} MiB/s | raw write+fdatasync {:8.1} MiB/s | ratio log/raw {:.3} ({} MiB per run)",
        median(&log_rates),
        median(&raw_rates),
        median(&ratios),
        bytes >> 20
    );
    Ok(())
}

fn append_log(dir: &Path, batch: &Bytes, batches: u64, mode: FlushMode) -> Result<f64> {
    let config = LogConfig {
        flush: match mode {
            FlushMode::End => FlushPolicy::Os,
            FlushMode::Every => FlushPolicy::EveryBatch,
        },
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config)?;
    let start = Instant::now();
    for _ in 0..batches {
        log.append(batch.clone(), 0, 1_700_000_000_000)?;
        if mode == FlushMode::Every {
            log.flush()?;
        }
    }
    log.flush()?;
    let elapsed = start.elapsed().as_secs_f64();
    log.delete()?;
    Ok(elapsed)
}

fn append_raw(path: &Path, batch: &Bytes, batches: u64, mode: FlushMode) -> Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let start = Instant::now();
    for _ in 0..batches {
        file.write_all(batch)?;
        if mode == FlushMode::Every {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(elapsed)
}

fn read_figure(args: &Args, dir: &Path, batch: &Bytes) -> Result<()> {
    let batches = (args.bytes / batch.len() as u64).max(1);
    let log_dir = dir.join("read");
    let config = LogConfig {
        flush: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let mut log = Log::open(&log_dir, config)?;
    for _ in 0..batches {
        log.append(batch.clone(), 0, 1_700_000_000_000)?;
    }
    log.flush()?;
    let end = log.log_end_offset();
    let chunk = 1 << 20;

    // The memcpy baseline copies the same bytes, in the same chunk sizes,
    // from memory into the same destination.
    let source: Vec<u8> = {
        let mut v = Vec::with_capacity((batches as usize) * batch.len());
        for _ in 0..batches {
            v.extend_from_slice(batch);
        }
        v
    };
    let mut dest = vec![0u8; chunk + batch.len()];
    let total = source.len() as u64;

    let (mut log_rates, mut mem_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=args.runs {
        let start = Instant::now();
        let mut offset = log.log_start_offset();
        let mut read_bytes = 0u64;
        while offset < end {
            let result = log.read(offset, chunk, i64::MAX)?;
            dest[..result.data.len()].copy_from_slice(&result.data);
            read_bytes += result.data.len() as u64;
            offset = result.next_offset;
        }
        let log_s = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            read_bytes == total,
            "read {read_bytes} bytes, wrote {total}"
        );
        std::hint::black_box(&dest);

        let start = Instant::now();
        for piece in source.chunks(chunk) {
            dest[..piece.len()].copy_from_slice(piece);
        }
        let mem_s = start.elapsed().as_secs_f64();
        std::hint::black_box(&dest);
        if run == 0 {
            continue; // warm-up: faults the mapping in, warms the cache
        }
        log_rates.push(mib_per_s(total, log_s));
        mem_rates.push(mib_per_s(total, mem_s));
        ratios.push(mem_s / log_s);
    }
    println!(
        "warm read + 1 copy out      : log {:8.1} MiB/s | memcpy {:8.1} MiB/s | ratio log/memcpy {:.3} ({} MiB per run)",
        median(&log_rates),
        median(&mem_rates),
        median(&ratios),
        total >> 20
    );
    log.delete()?;
    Ok(())
}
