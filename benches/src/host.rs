//! What a benchmark prints about the machine it ran on.

/// The 1, 5 and 15 minute load averages, from /proc (the machine is
/// shared: a figure taken under load says so).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// CPUs, CPU model and memory, from /proc.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(String::new(), |kib| {
            format!(", {:.0} GiB RAM", kib / (1024.0 * 1024.0))
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The upstream version only (no build suffix).
    let kernel = kernel.trim().split('-').next().unwrap_or_default();
    format!("{cpus} CPUs ({model}){mem_gib}, Linux {kernel}")
}

/// CPU time the whole machine has spent busy so far (every CPU's user,
/// nice, system, irq and softirq time from `/proc/stat`): it counts the
/// kernel's own threads too (writeback, I/O completion), which no process's
/// time shows.
pub fn busy_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy =
        fields.first()? + fields.get(1)? + fields.get(2)? + fields.get(5)? + fields.get(6)?;
    Some(std::time::Duration::from_millis(busy * 10))
}
