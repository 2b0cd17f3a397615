//! Wall clock, this process's CPU time, and a server process tree's CPU time
//! and memory, read from `/proc`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::resource::{UsageWho, getrusage};

/// Unix time derived from one reading of the wall clock plus a monotonic
/// offset, so that the hot path never calls `SystemTime::now`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    unix_at_start: f64,
    start: Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // binary edge: the load generator reads the real clock
    pub fn new() -> Clock {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
        Clock { unix_at_start: unix, start: Instant::now() }
    }

    /// Seconds since the epoch.
    pub fn unix(&self) -> f64 {
        self.unix_at_start + self.start.elapsed().as_secs_f64()
    }

    /// The monotonic instant at which the clock reads `unix`.
    pub fn instant_at(&self, unix: f64) -> Instant {
        let off = (unix - self.unix_at_start).max(0.0);
        self.start + Duration::from_secs_f64(off)
    }
}

/// CPU seconds used by this process so far: (user, system).
pub fn self_cpu() -> (f64, f64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (tv(u.user_time()), tv(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `pid` and all its descendants.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut children: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if let Some(f) = stat_fields(p)
                && let Some(ppid) = f.get(1).and_then(|s| s.parse::<i32>().ok())
            {
                children.push((ppid, p));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(children.iter().filter(|(pp, _)| *pp == parent).map(|(_, p)| *p));
        i += 1;
    }
    out
}

/// CPU seconds (user + system) used so far by `pid` and its live descendants.
pub fn tree_cpu(pid: i32) -> Option<f64> {
    let tick = clock_ticks();
    let mut total = 0.0;
    let mut any = false;
    for p in process_tree(pid) {
        if let Some(f) = stat_fields(p) {
            // after the name: state(0) ppid(1) ... utime(11) stime(12)
            let ut = f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let st = f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            total += (ut + st) as f64 / tick;
            any = true;
        }
    }
    any.then_some(total)
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Machine-wide (busy, total) jiffies from the first line of /proc/stat.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = text.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Online CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Resident memory of a process tree, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS summed over the tree.
    pub rss: Option<u64>,
    /// RssAnon summed over the tree (heap, stacks: what the process really holds).
    pub anon: Option<u64>,
    /// RssFile summed over the tree (mapped files: binary, libraries, an mmap'ed database; reclaimable).
    pub file: Option<u64>,
    /// VmHWM (peak RSS) of the root process.
    pub peak: Option<u64>,
}

pub fn tree_memory(pid: i32) -> Memory {
    let tree = process_tree(pid);
    let sum = |key: &str| {
        status_kib(pid, key).map(|root| root + tree[1..].iter().filter_map(|p| status_kib(*p, key)).sum::<u64>())
    };
    Memory { rss: sum("VmRSS:"), anon: sum("RssAnon:"), file: sum("RssFile:"), peak: status_kib(pid, "VmHWM:") }
}
