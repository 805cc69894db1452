//! The servers under test, as child processes of this binary: started, awaited until ready,
//! weighed (resident memory) and stopped.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A free loopback port (bound and released: the child binds it a moment later).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    name: String,
    child: Child,
    pub(crate) port: u16,
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
    log: PathBuf,
    /// From spawning the process to its first successful `/readyz`.
    pub(crate) ready_after: Duration,
}

impl Server {
    /// Runs `[WRAP…] consentry-bench ARGS` with exactly `env` (nothing inherited but `PATH`),
    /// its output in `work/NAME.log`, and waits until `GET /readyz` on `port` answers 200.
    pub(crate) async fn start(
        name: &str,
        wrap: &[&str],
        args: &[&str],
        env: &[(String, String)],
        port: u16,
        work: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this program")?;
        Self::start_program(name, wrap, &exe, args, env, port, work).await
    }

    /// Runs `[WRAP…] PROGRAM ARGS` the same way: exactly `env` and `PATH`, output in
    /// `work/NAME.log`, ready when `GET /readyz` on `port` answers 200.
    pub(crate) async fn start_program(
        name: &str,
        wrap: &[&str],
        exe: &Path,
        args: &[&str],
        env: &[(String, String)],
        port: u16,
        work: &Path,
    ) -> anyhow::Result<Self> {
        // One log per start: a scenario that runs on both backends starts its servers twice.
        let log = (1..)
            .map(|n| match n {
                1 => work.join(format!("{name}.log")),
                n => work.join(format!("{name}-{n}.log")),
            })
            .find(|path| !path.exists())
            .context("no free log name")?;
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let started = Instant::now();
        let mut command = match wrap.split_first() {
            Some((program, wrap_args)) => {
                let mut command = Command::new(program);
                command.args(wrap_args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let child = command
            .args(args)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let mut server = Self {
            name: name.to_owned(),
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            ready_after: Duration::ZERO,
        };
        server.ready_after = server.await_ready(started).await?;
        Ok(server)
    }

    async fn await_ready(&mut self, started: Instant) -> anyhow::Result<Duration> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.base);
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within 60 s:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Resident memory now, in bytes (`VmRSS` of `/proc/PID/status`).
    pub(crate) fn rss(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        resident_bytes(pid)
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU time the server has used so far, all threads, user and system.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let pid = self.child.id().context("the server has exited")?;
        cpu_time(pid)
    }

    /// SIGTERM (a graceful stop, so that a profiler wrapping the server writes its output),
    /// then SIGKILL if it is still running after 30 s.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// `VmRSS` of a process, in bytes.
pub(crate) fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("resident memory is read from /proc (Linux only)")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// User plus system CPU time of a process (`/proc/PID/stat`, in the kernel's fixed 100 Hz
/// `USER_HZ` ticks).
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("CPU time is read from /proc (Linux only)")?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("an unreadable /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("a short /proc/PID/stat")?.parse()?)
    };
    // utime and stime are fields 14 and 15; after the name, indexes 11 and 12.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// CPU time of every PostgreSQL process on this machine (server and backends), by pid: what
/// the database spends, on a machine where it serves this run alone.
pub(crate) fn postgres_cpu() -> std::collections::HashMap<u32, Duration> {
    let mut cpu = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "postgres"
            && let Ok(time) = cpu_time(pid)
        {
            cpu.insert(pid, time);
        }
    }
    cpu
}

/// PostgreSQL's CPU time since `before` (of [`postgres_cpu`]): what its processes spent since,
/// backends started meanwhile included.
pub(crate) fn postgres_cpu_since(before: &std::collections::HashMap<u32, Duration>) -> Duration {
    postgres_cpu()
        .iter()
        .map(|(pid, now)| now.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

/// Lets a freshly started or freshly loaded server settle (allocator, lazy statics) before
/// its memory is read.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_time() {
        let before = cpu_time(std::process::id()).unwrap();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(std::process::id()).unwrap() >= before + Duration::from_millis(50));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = resident_bytes(std::process::id()).unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
