//! PostgreSQL for the end-to-end tests: a schema of one test on the machine's server, and a
//! private server (initdb + pg_ctl in a temp dir) a test may restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::free_port;

/// Runs `sql` with psql against `url`; panics with psql's output when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql runs (install postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A schema of one test on the machine's server (`GOVERNANCE_TEST_DATABASE_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`); dropped on drop.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new() -> Self {
        let url = std::env::var("GOVERNANCE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("gov_e2e_{}_{nanos:x}", std::process::id());
        Self { url, name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.url,
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

/// A private PostgreSQL server (initdb in a temp dir, a free port, trust auth); stopped on
/// drop. Tests restart this one, never the machine's shared server.
pub struct PrivatePg {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePg {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("/usr/lib/postgresql exists (install postgresql)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null());
        as_postgres_user(&mut initdb, dir.path());
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        pg.ctl(&["start", "-w", "-t", "60"]);
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl <args>` on this server; panics when it fails.
    pub fn ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(args)
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("pg.log"))
            .stdout(Stdio::null());
        as_postgres_user(&mut cmd, self.dir.path());
        let out = cmd.output().expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["stop", "-m", "immediate", "-D"]).arg(&data);
        as_postgres_user(&mut cmd, self.dir.path());
        let _ = cmd.output();
    }
}

/// PostgreSQL refuses to run as root: when the test runs as root, run the command as the
/// `postgres` user (the directory handed over to it).
fn as_postgres_user(cmd: &mut Command, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        if is_root() {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("postgres user")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            let _ = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(dir)
                .status();
            cmd.uid(uid).gid(gid);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
