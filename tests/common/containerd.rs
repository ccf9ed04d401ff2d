//! A private containerd for tests: its own root, state, socket and mount namespace (a private
//! /run, so shim sockets never touch the host's), stopped and removed on drop. Only the
//! processes and containers it started are ever signalled or deleted.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "k8s.io";
/// The pod sandbox ("pause") image CRI uses; tests that create pods import it first.
pub const SANDBOX_IMAGE: &str = "example.org/pause:1";

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    /// `1.6`, `1.7` or `2`.
    pub series: String,
    child: Option<Child>,
    /// Containers this lab started (removed on drop).
    containers: RefCell<Vec<String>>,
}

/// The containerd series a lab runs: `STALEWATCH_CONTAINERD` (`1.6`: Debian 12's package;
/// `1.7`, `2`: Debian 13's and unstable's, unpacked by scripts/containerd-fetch.sh), `2`
/// by default (closest to what AKS ships).
pub fn series() -> String {
    std::env::var("STALEWATCH_CONTAINERD").unwrap_or_else(|_| "2".into())
}

/// Where a series' binaries are: `None` for the system's (on PATH).
pub fn bin_dir(series: &str) -> Option<PathBuf> {
    match series {
        "1.6" => None,
        s => Some(
            PathBuf::from(
                std::env::var("STALEWATCH_CONTAINERD_CACHE")
                    .unwrap_or_else(|_| "/var/cache/stalewatch-containerd".into()),
            )
            .join(s)
            .join("root/usr/bin"),
        ),
    }
}

/// A series' binary (`containerd`, `ctr`) as a command line names it.
pub fn binary(series: &str, name: &str) -> String {
    match bin_dir(series) {
        Some(d) => d.join(name).display().to_string(),
        None => name.to_string(),
    }
}

/// The config a series reads: version 2 for 1.x, version 3 for 2.x (the CRI plugin split
/// into `io.containerd.cri.v1.images` and `.runtime`). Registries resolve to a closed port:
/// a test never pulls from anywhere.
fn config(series: &str, base: &Path, sock: &Path, extra_images: &str) -> String {
    let (b, s) = (base.display(), sock.display());
    if series.starts_with('1') {
        return format!(
            r#"version = 2
root = "{b}/root"
state = "{b}/state"
[grpc]
  address = "{s}"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{b}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
    sandbox_image = "{SANDBOX_IMAGE}"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      {extra_images}
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{b}/certs.d"
"#
        );
    }
    format!(
        r#"version = 3
root = "{b}/root"
state = "{b}/state"
[grpc]
  address = "{s}"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{b}/opt"
  [plugins."io.containerd.cri.v1.images"]
    {extra_images}
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{SANDBOX_IMAGE}"
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = "{b}/certs.d"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
"#
    )
}

impl Lab {
    /// Starts containerd of the series `STALEWATCH_CONTAINERD` names, or returns `None`
    /// (loudly) where it is not installed and CI is not set.
    pub fn start(test: &str) -> Option<Lab> {
        Self::start_series(test, &series())
    }

    /// Starts containerd of one series (`1.6`, `1.7`, `2`).
    pub fn start_series(test: &str, series: &str) -> Option<Lab> {
        Self::start_with(test, series, "")
    }

    /// Starts containerd with extra settings for the CRI images plugin (TOML lines).
    pub fn start_with(test: &str, series: &str, extra_images: &str) -> Option<Lab> {
        let found = match bin_dir(series) {
            None => super::require("containerd", test) && super::require("ctr", test),
            Some(d) => {
                let ok = d.join("containerd").is_file() && d.join("ctr").is_file();
                if !ok {
                    super::not_run(
                        test,
                        &format!(
                            "containerd {series} is not in {} (scripts/containerd-fetch.sh)",
                            d.display()
                        ),
                    );
                }
                ok
            }
        };
        if !found || !super::require("runc", test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("stalewatch-ctrd-")
            .tempdir()
            .unwrap();
        let base = dir.path().to_path_buf();
        for d in ["root", "state", "run", "opt", "certs.d/_default"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(
            base.join("certs.d/_default/hosts.toml"),
            "server = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let sock = base.join("containerd.sock");
        // The SOCI snapshotter, where a test starts one (`start_soci`): a proxy plugin whose
        // socket is dialled lazily, so it may come up after containerd.
        let soci = format!(
            "[proxy_plugins.soci]\n  type = \"snapshot\"\n  address = \"{}\"\n",
            base.join("soci.sock").display()
        );
        std::fs::write(
            base.join("config.toml"),
            config(series, &base, &sock, extra_images) + &soci,
        )
        .unwrap();
        let mut lab = Lab {
            dir,
            sock,
            series: series.to_string(),
            child: None,
            containers: RefCell::new(Vec::new()),
        };
        lab.start_again();
        let version = lab.ctr(&["version"]);
        eprintln!(
            "lab containerd {series}: {}",
            String::from_utf8_lossy(&version.stdout)
                .lines()
                .rfind(|l| l.contains("Version"))
                .unwrap_or("?")
                .trim()
        );
        Some(lab)
    }

    /// Lets CRI pulls reach a plain-HTTP registry at `host` (`127.0.0.1:PORT`); every other
    /// registry stays unreachable.
    pub fn allow_registry(&self, host: &str) {
        let dir = self.dir.path().join("certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = format!(
            "server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(dir.join("hosts.toml"), hosts).unwrap();
    }

    /// Starts the SOCI snapshotter (scripts/containerd-fetch.sh soci) inside containerd's
    /// mount namespace, where its FUSE mounts are then visible (and only there); `None`
    /// (loudly) where it is not fetched. Stopped on drop of the returned guard.
    pub fn start_soci(&self, test: &str) -> Option<Soci> {
        let bin = bin_dir("soci").unwrap();
        if !bin.join("soci-snapshotter-grpc").is_file() {
            super::not_run(
                test,
                "the SOCI snapshotter is not fetched (scripts/containerd-fetch.sh soci)",
            );
            return None;
        }
        let base = self.dir.path();
        std::fs::write(base.join("soci.toml"), "").unwrap();
        let child = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "--"])
            .arg(bin.join("soci-snapshotter-grpc"))
            .arg("--address")
            .arg(base.join("soci.sock"))
            .arg("--root")
            .arg(base.join("soci-root"))
            .arg("--config")
            .arg(base.join("soci.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("soci.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !base.join("soci.sock").exists() {
            assert!(Instant::now() < deadline, "the SOCI snapshotter did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Soci {
            child,
            cli: bin.join("soci"),
        })
    }

    /// The `soci` CLI against this lab, in containerd's mount namespace.
    pub fn soci(&self, soci: &Soci, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "--"])
            .arg(&soci.cli)
            .arg("--address")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "soci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr` of this lab's series.
    pub fn ctr_binary(&self) -> String {
        binary(&self.series, "ctr")
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("containerd is not running")
    }

    /// Makes the runtime `io.containerd.<name>.v2` exist: containerd runs the shim
    /// `containerd-shim-<name>-v2` from PATH, here the series' runc shim under that name, so a
    /// container of "Kata" really runs (on runc) while containerd records Kata's runtime name.
    pub fn shim_alias(&self, name: &str) {
        let runc_shim = match bin_dir(&self.series) {
            Some(d) => d.join("containerd-shim-runc-v2"),
            None => {
                let out = Command::new("sh")
                    .args(["-c", "command -v containerd-shim-runc-v2"])
                    .output()
                    .unwrap();
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        assert!(runc_shim.is_file(), "no runc shim at {}", runc_shim.display());
        let alias = self
            .dir
            .path()
            .join("shims")
            .join(format!("containerd-shim-{name}-v2"));
        let _ = std::fs::remove_file(&alias);
        std::os::unix::fs::symlink(runc_shim, alias).unwrap();
    }

    /// Starts containerd (again) on the lab's state and waits until it answers.
    pub fn start_again(&mut self) {
        let base = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("containerd.log"))
            .unwrap();
        let script = format!(
            "mount -n --bind '{}' /run && exec '{}' --config '{}'",
            base.join("run").display(),
            binary(&self.series, "containerd"),
            base.join("config.toml").display()
        );
        // containerd finds its shim (containerd-shim-runc-v2) on PATH: the lab's aliases
        // (`shim_alias`) first, then its own series', then the system's.
        let shims = base.join("shims");
        std::fs::create_dir_all(&shims).unwrap();
        let path = match bin_dir(&self.series) {
            Some(d) => format!(
                "{}:{}:{}",
                shims.display(),
                d.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
            None => format!(
                "{}:{}",
                shims.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        };
        // setsid, unshare and sh exec into containerd: the child's pid is containerd's.
        let child = Command::new("setsid")
            .env("PATH", path)
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if Command::new(self.ctr_binary())
                .arg("-a")
                .arg(&self.sock)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "containerd did not come up: {}",
            std::fs::read_to_string(base.join("containerd.log")).unwrap_or_default()
        );
    }

    /// Kills containerd (SIGKILL, as a crash); its shims and tasks live on.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctr_unchecked(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", &self.ctr_binary(), "-a"])
            .arg(&self.sock)
            .args(["-n", NAMESPACE])
            .args(args)
            .output()
            .unwrap()
    }

    /// `ctr` in containerd's mount namespace (so its FIFOs stay private), namespace k8s.io.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let out = self.ctr_unchecked(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Imports an OCI archive; its `org.opencontainers.image.ref.name` becomes the tag.
    pub fn import(&self, archive: &Path, base_name: &str) {
        self.ctr(&[
            "images",
            "import",
            "--base-name",
            base_name,
            archive.to_str().unwrap(),
        ]);
    }

    /// Imports the shared Alpine minirootfs `version` as a one-layer image `base_name:latest`
    /// (umoci); returns its OCI layout.
    pub fn import_alpine(&self, work: &Path, version: &str, base_name: &str) -> PathBuf {
        let root = super::unpack_alpine(version, work);
        let (layout, archive) = super::umoci_archive(&root, work);
        self.import(&archive, base_name);
        layout
    }

    /// Runs `/bin/sleep` in a new container of `image`, with the given labels.
    pub fn run_container(&self, id: &str, image: &str, labels: &[(&str, &str)]) {
        self.run_container_with(id, image, labels, &[]);
    }

    /// [`Lab::run_container`] with more `ctr run` options (`--snapshotter soci`).
    pub fn run_container_with(&self, id: &str, image: &str, labels: &[(&str, &str)], options: &[&str]) {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--null-io".into()];
        args.extend(options.iter().map(|o| o.to_string()));
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.extend([
            image.to_string(),
            id.to_string(),
            "/bin/sleep".into(),
            "3600".into(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs);
        self.containers.borrow_mut().push(id.to_string());
    }

    /// The host pid of a container's task (`ctr tasks ls`).
    pub fn task_pid(&self, id: &str) -> u32 {
        let out = String::from_utf8_lossy(&self.ctr(&["tasks", "ls"]).stdout).into_owned();
        out.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(id)).then(|| f.next()?.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no task {id} in {out}"))
    }

    /// Kills and deletes a container this lab started.
    pub fn stop_container(&self, id: &str) {
        let _ = self.ctr_unchecked(&["tasks", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ctr_unchecked(&["tasks", "delete", id]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.ctr_unchecked(&["containers", "delete", id]);
        self.containers.borrow_mut().retain(|c| c != id);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids: Vec<String> = self.containers.borrow().clone();
            for id in ids {
                self.stop_container(&id);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running SOCI snapshotter, killed on drop (its FUSE mounts go with it).
pub struct Soci {
    child: Child,
    cli: PathBuf,
}

impl Drop for Soci {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
