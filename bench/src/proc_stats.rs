//! CPU time and memory of a process from Linux `/proc/<pid>/stat` and `/proc/<pid>/status`.

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size so far (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
}

/// User + system clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after the
    // last ')'. Then `state` is field 3, utime field 14 and stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`, in bytes.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Reads process `pid`; `ticks_per_s` is `getconf CLK_TCK` (100 on Linux almost always).
pub fn read(pid: u32, ticks_per_s: f64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_s: parse_stat_ticks(&stat)? as f64 / ticks_per_s,
        rss_bytes: parse_status_kib(&status, "VmRSS:")?,
        peak_rss_bytes: parse_status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// [`read`] summed over `pid` and every process descended from it (a pre-fork server's
/// workers): CPU and RSS added up, peak RSS the largest single one.
pub fn read_tree(pid: u32, ticks_per_s: f64) -> Option<ProcSample> {
    let tree = process_tree(pid);
    let mut total = read(pid, ticks_per_s)?;
    for &p in &tree[1..] {
        if let Some(s) = read(p, ticks_per_s) {
            total.cpu_s += s.cpu_s;
            total.rss_bytes += s.rss_bytes;
            total.peak_rss_bytes = total.peak_rss_bytes.max(s.peak_rss_bytes);
        }
    }
    Some(total)
}

/// `pid` and every process descended from it, parents before their children.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = parse_stat_ppid(&stat) {
            parents.push((child, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut k = 0;
    while k < tree.len() {
        let parent = tree[k];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        k += 1;
    }
    tree
}

/// Whether `pid` has exited (gone, or a zombie not yet reaped).
pub fn has_exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X")
    })
}

/// The parent pid (field 4) from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid of the first process whose command name (`/proc/<pid>/comm`) is `name`.
pub fn find_by_name(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let stat = "4242 (vigil (infer) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 123456789 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_stat_ppid(stat), Some(1));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn status_kib_lines() {
        let status = "Name:\tvigil\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(100 * 1024 * 1024));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(200 * 1024 * 1024));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn a_tree_counts_the_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("start sleep");
        let me = read(std::process::id(), 100.0).expect("own /proc entry");
        let tree = read_tree(std::process::id(), 100.0).expect("own tree");
        let sleep = read(child.id(), 100.0).expect("the child's /proc entry");
        child.kill().expect("stop sleep");
        let _ = child.wait();
        assert!(
            tree.rss_bytes >= me.rss_bytes + sleep.rss_bytes / 2,
            "tree {tree:?}, self {me:?}, child {sleep:?}"
        );
    }

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id(), 100.0).expect("own /proc entry");
        assert!(
            me.rss_bytes > 0 && me.peak_rss_bytes >= me.rss_bytes,
            "{me:?}"
        );
    }
}
