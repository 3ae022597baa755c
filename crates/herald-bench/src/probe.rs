//! The server's resource use, read from `/proc`: CPU time (utime + stime) and resident memory
//! (VmRSS), summed over the given processes.

use anyhow::Context;
use serde::Serialize;

/// One reading of the server processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Sample {
    /// CPU seconds (user + system) since each process started, summed.
    pub(crate) cpu_secs: f64,
    /// Resident memory in KiB, summed.
    pub(crate) rss_kib: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status` of every pid.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pids: Vec<u32>,
    ticks_per_sec: f64,
}

impl Probe {
    /// `None` when no pid is given. Fails if a pid cannot be read.
    pub(crate) fn new(pids: &[u32]) -> anyhow::Result<Option<Probe>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let ticks = rustix::param::clock_ticks_per_second();
        let probe = Probe {
            pids: pids.to_vec(),
            ticks_per_sec: if ticks == 0 { 100.0 } else { ticks as f64 },
        };
        probe.sample().context("--server-pid")?;
        Ok(Some(probe))
    }

    pub(crate) fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub(crate) fn sample(&self) -> anyhow::Result<Sample> {
        let mut s = Sample::default();
        for &pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| {
                format!("cannot read /proc/{pid}/stat (is process {pid} running?)")
            })?;
            let ticks = parse_cpu_ticks(&stat)
                .with_context(|| format!("unexpected /proc/{pid}/stat: {stat:?}"))?;
            s.cpu_secs += ticks as f64 / self.ticks_per_sec;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .with_context(|| format!("cannot read /proc/{pid}/status"))?;
            s.rss_kib += parse_rss_kib(&status).unwrap_or(0);
        }
        Ok(s)
    }

    /// Like [`Probe::sample`], but a failure (the server died) is a missing value, not an error.
    pub(crate) fn try_sample(&self) -> Option<Sample> {
        match self.sample() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("herald-bench: warning: {e:#}");
                None
            }
        }
    }
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`; machine-wide).
pub(crate) fn listen_overflows() -> Option<u64> {
    parse_listen_overflows(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

fn parse_listen_overflows(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state): utime is the 12th field from there.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 2000 0 0 0 250 75 0 0 20 0 9 0 \
                    100 123456789 5000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        let status = "Name:\therald\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 326 326\n\
                       IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_overflows(netstat), Some(326));
    }

    #[test]
    fn reads_this_process() {
        let probe = Probe::new(&[std::process::id()]).unwrap().unwrap();
        let s = probe.sample().unwrap();
        assert!(s.rss_kib > 0);
        assert!(Probe::new(&[]).unwrap().is_none());
        assert!(Probe::new(&[u32::MAX - 1]).is_err());
    }
}
