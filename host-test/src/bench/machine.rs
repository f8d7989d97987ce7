//! What machine a bench ran on, for the report (`d365 bench --results`):
//! numbers mean little without the cores, the load and the versions.

use std::process::Command;

/// A snapshot taken before and after a run.
pub struct Machine {
    pub taken_at: String,
    pub cores: usize,
    pub cpu: String,
    pub mem_total_gib: f64,
    pub mem_available_gib: f64,
    pub load: String,
    pub rustc: String,
    pub node: String,
    /// The pinned dynamics-web-api (host-test/js/package.json).
    pub dwa: String,
    pub commit: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unavailable".into())
}

fn meminfo_gib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / (1024.0 * 1024.0))
}

impl Machine {
    pub fn now() -> Machine {
        let dir = env!("CARGO_MANIFEST_DIR");
        let mut commit = first_line("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
        // The results file itself is left out: rewriting RESULTS.md from a
        // clean checkout dirties it before the next run reads the status.
        if !first_line(
            "git",
            &[
                "-C",
                dir,
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)host-test/benches/RESULTS.md",
            ],
        )
        .eq("unavailable")
        {
            commit.push_str(" (with uncommitted changes)");
        }
        Machine {
            taken_at: first_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| {
                    c.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split(':').nth(1))
                        .map(|m| m.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into()),
            mem_total_gib: meminfo_gib("MemTotal:"),
            mem_available_gib: meminfo_gib("MemAvailable:"),
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
            rustc: first_line("rustc", &["--version"]),
            node: first_line("node", &["--version"]),
            dwa: std::fs::read_to_string(format!("{dir}/js/package.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    v["dependencies"]["dynamics-web-api"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "unknown".into()),
            commit,
        }
    }
}
