//! An ephemeral PostgreSQL cluster: `initdb` into a temporary directory, its own port,
//! `wal_level=logical`, run as the `postgres` OS user when started as root.
//!
//! Cleanup is guaranteed even when the owning process is killed: a tiny supervisor process
//! (`sh`) holds the read end of a pipe whose write end only this process holds. When this process
//! drops the [`Cluster`] or dies in any way, the pipe closes, and the supervisor stops PostgreSQL
//! (fast shutdown, then kill) and removes the temporary directory.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Password of the `postgres` superuser and of the `authenticator` role.
pub const PASSWORD: &str = "postgres";

const SUPERVISOR: &str = r#"
trap '' INT TERM HUP
read _ignored
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -INT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"#;

/// A running PostgreSQL cluster that is stopped and deleted when dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    postmaster: Mutex<Option<Child>>,
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
    Ok(l.local_addr()?.port())
}

fn find_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("LIVECHAT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let candidates = [
        "/usr/lib/postgresql/15/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/17/bin",
    ];
    for c in candidates {
        if Path::new(c).join("initdb").exists() {
            return Ok(PathBuf::from(c));
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries not found: install postgresql-15 and postgresql-15-wal2json \
         (apt-get install postgresql-15 postgresql-15-wal2json) or set LIVECHAT_PG_BIN"
    )
}

fn postgres_user_ids() -> Result<(u32, u32)> {
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("running as root, but there is no `postgres` OS user to run PostgreSQL as");
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))
}

impl Cluster {
    /// Creates and starts a cluster listening on 127.0.0.1:`port` (0 picks a free port).
    ///
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn start(port: u16) -> Result<Cluster> {
        let bin = find_bin_dir()?;
        // SAFETY: geteuid has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user_ids()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("livechat-stack-")
            .tempdir()
            .context("creating the temporary directory")?
            .keep();
        let data = dir.join("data");

        // Start the supervisor first, so the directory is removed whatever happens next.
        let mut sup = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("livechat-stack-supervisor")
            .arg(&dir)
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the cleanup supervisor (sh)")?;
        let sup_in = sup
            .stdin
            .take()
            .ok_or_else(|| anyhow!("supervisor stdin missing"))?;
        let mut cluster = Cluster {
            dir: dir.clone(),
            data: data.clone(),
            bin,
            port,
            run_as,
            postmaster: Mutex::new(None),
            supervisor: Mutex::new(Some((sup, sup_in))),
        };
        if let Some((uid, gid)) = run_as {
            chown(&dir, uid, gid)?;
        }
        cluster.initdb()?;
        let auto_port = port == 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if auto_port {
                cluster.port = free_port()?;
            }
            cluster.write_port_conf()?;
            match cluster.launch() {
                Ok(()) => break,
                Err(e) if auto_port && attempt < 4 => {
                    tracing::warn!("PostgreSQL did not start on port {}: {e:#}", cluster.port);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.current_dir(&self.dir);
        c
    }

    fn initdb(&self) -> Result<()> {
        let pwfile = self.dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some((uid, gid)) = self.run_as {
            chown(&pwfile, uid, gid)?;
        }
        let locale = if Path::new("/usr/lib/locale/C.utf8").exists()
            || Path::new("/usr/lib/locale/C.UTF-8").exists()
        {
            "C.UTF-8"
        } else {
            "C"
        };
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg(format!("--locale={locale}"))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let conf = format!(
            "\n# livechat-stack\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 200\nmax_wal_senders = 100\n\
             fsync = off\nfull_page_writes = off\nwal_writer_delay = 10ms\n\
             max_connections = 500\nshared_buffers = 128MB\nlog_min_messages = warning\n\
             log_min_error_statement = panic\ntimezone = 'UTC'\n\
             include_if_exists = 'port.conf'\n",
            self.dir.display()
        );
        let pg_conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&pg_conf)?;
        text.push_str(&conf);
        std::fs::write(&pg_conf, text)?;
        Ok(())
    }

    fn write_port_conf(&self) -> Result<()> {
        let p = self.data.join("port.conf");
        std::fs::write(&p, format!("port = {}\n", self.port))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&p, uid, gid)?;
        }
        Ok(())
    }

    fn launch(&self) -> Result<()> {
        let log = self.dir.join("postgres.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        if let Some((uid, gid)) = self.run_as {
            chown(&log, uid, gid)?;
        }
        // What this postmaster writes starts here (the log is shared across restarts).
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .context("starting postgres")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                let mut s = Vec::new();
                let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_end(&mut s));
                let own = String::from_utf8_lossy(s.get(log_start as usize..).unwrap_or(&[]));
                let lines: Vec<&str> = own.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                bail!("postgres exited with {status}: {tail}");
            }
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("PostgreSQL did not become ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        *self.postmaster.lock().map_err(|_| anyhow!("poisoned"))? = Some(child);
        Ok(())
    }

    /// The TCP port PostgreSQL listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the cluster (removed when the cluster stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection URL of the `postgres` superuser to database `db`.
    pub fn superuser_url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Connection URL of the `authenticator` role (what PostgREST logs in as) to database `db`.
    pub fn authenticator_url(&self, db: &str) -> String {
        format!(
            "postgresql://authenticator:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Stops PostgreSQL (fast shutdown) and starts it again on the same port and data.
    /// Every open connection is dropped, as in a real database restart.
    ///
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn restart(&self) -> Result<()> {
        self.stop_postmaster();
        // On a loaded machine the old server's resources (its pid file, shared memory, socket
        // lock) can take a moment to go; a start that fails meanwhile is tried again.
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    tracing::warn!("PostgreSQL restart attempt {attempt} failed: {e:#}");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn stop_postmaster(&self) {
        let Ok(mut guard) = self.postmaster.lock() else {
            return;
        };
        if let Some(mut child) = guard.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            // Fast shutdown; if it has not finished after 10 s, immediate shutdown (which still
            // stops the server's children); after 5 s more, kill.
            let started = Instant::now();
            let mut quit_sent = false;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) if started.elapsed() < Duration::from_secs(15) => {
                        if !quit_sent {
                            quit_sent = true;
                            // SAFETY: sending a signal to our own child process.
                            unsafe {
                                libc::kill(child.id() as i32, libc::SIGQUIT);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Stops PostgreSQL and removes the temporary directory; waits until both are done.
    pub fn stop(&self) {
        self.stop_postmaster();
        let sup = self.supervisor.lock().ok().and_then(|mut g| g.take());
        if let Some((mut child, stdin)) = sup {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_starts_restarts_and_leaves_nothing_behind() {
        let c = Cluster::start(0).unwrap();
        let dir = c.dir().to_path_buf();
        assert!(dir.join("data/PG_VERSION").exists());
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
        let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
        c.restart().unwrap();
        let pid2 = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
        let pid2: i32 = pid2.lines().next().unwrap().trim().parse().unwrap();
        assert_ne!(pid, pid2);
        drop(c);
        assert!(!dir.exists(), "temporary directory must be removed");
        // SAFETY: probing a pid with signal 0.
        assert_ne!(unsafe { libc::kill(pid2, 0) }, 0, "postgres must be gone");
    }
}
