//! A throwaway PostgreSQL cluster: initdb in a temp dir, a free loopback
//! port, started as the `postgres` OS user when we run as root (PostgreSQL
//! refuses to run as root). Used by `pg-airlock demo` and by the test
//! harness; never by the proxy itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install the `postgresql` package, or set PG_BIN)"
    )]
    NoBinaries,
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Cluster {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    stopped: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// The newest installed server binaries, or `$PG_BIN`.
pub fn find_bin() -> Result<PathBuf, Error> {
    if let Ok(b) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(b));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or(Error::NoBinaries)
}

/// A command for a server binary, as the `postgres` user when root.
fn pg_cmd(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut c: Command, step: &str) -> Result<String, Error> {
    let out = c.stdin(Stdio::null()).output().map_err(|e| Error::Step {
        step: step.into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Step {
            step: step.into(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback port that is free now, for a server about to bind it.
///
/// The port is picked below the kernel's ephemeral range: a port from that
/// range (what binding port 0 returns) can be taken as the local end of any
/// outgoing connection between this check and the server's own bind, which
/// busy test runs and benchmarks do hit. Falls back to port 0.
pub fn free_port() -> Result<u16, Error> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 12_000 {
        for _ in 0..64 {
            let port = 10_000 + rand::random::<u16>() % (low - 10_000);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// initdb and start. `hba` is the pg_hba.conf content; `settings` are
    /// extra `-c` server settings.
    pub fn start(name: &str, hba: &str, settings: &[&str]) -> Result<Cluster, Error> {
        let bin = find_bin()?;
        let dir = std::env::temp_dir().join(format!(
            "{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir)?;
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("-R").arg("postgres:postgres").arg(&dir);
            run(c, "chown")?;
        }
        let mut c = pg_cmd(&bin, "initdb");
        c.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]);
        run(c, "initdb")?;
        std::fs::write(data.join("pg_hba.conf"), hba)?;
        let port = free_port()?;
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            socket_dir.display()
        );
        for s in settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let mut c = pg_cmd(&bin, "pg_ctl");
        c.arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(&opts)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start")?;
        Ok(Cluster {
            bin,
            dir,
            data,
            socket_dir,
            port,
            stopped: false,
        })
    }

    /// Stop the cluster and remove its files when process `pid` exits,
    /// however it exits (a test binary has no reliable destructor).
    pub fn watchdog(&self, pid: u32) -> Result<(), Error> {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {} {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.data.display(),
            self.dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(stop)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }

    /// Run SQL as the superuser over the Unix socket.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        Ok(run(
            c,
            &format!("psql {}", sql.chars().take(60).collect::<String>()),
        )?
        .trim_end()
        .to_string())
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut c = pg_cmd(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        let _ = run(c, "pg_ctl stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
