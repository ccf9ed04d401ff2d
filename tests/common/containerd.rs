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
    child: Option<Child>,
    /// Containers this lab started (removed on drop).
    containers: RefCell<Vec<String>>,
}

impl Lab {
    /// Starts containerd, or returns `None` (loudly) where it is not installed and CI is not set.
    pub fn start(test: &str) -> Option<Lab> {
        if !super::require("containerd", test)
            || !super::require("ctr", test)
            || !super::require("runc", test)
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("stalewatch-ctrd-")
            .tempdir()
            .unwrap();
        let base = dir.path().to_path_buf();
        for d in ["root", "state", "run", "opt"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let sock = base.join("containerd.sock");
        let config = format!(
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
    sandbox_image = "{sandbox}"
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."*"]
      endpoint = ["http://127.0.0.1:1"]
"#,
            b = base.display(),
            s = sock.display(),
            sandbox = SANDBOX_IMAGE
        );
        std::fs::write(base.join("config.toml"), config).unwrap();
        let mut lab = Lab {
            dir,
            sock,
            child: None,
            containers: RefCell::new(Vec::new()),
        };
        lab.start_again();
        Some(lab)
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("containerd is not running")
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
            "mount -n --bind '{}' /run && exec containerd --config '{}'",
            base.join("run").display(),
            base.join("config.toml").display()
        );
        // setsid, unshare and sh exec into containerd: the child's pid is containerd's.
        let child = Command::new("setsid")
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
            if Command::new("ctr")
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
            .args(["-t", &self.pid().to_string(), "-m", "ctr", "-a"])
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

    /// Runs `/bin/sleep` in a new container of `image`, with the given labels.
    pub fn run_container(&self, id: &str, image: &str, labels: &[(&str, &str)]) {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--null-io".into()];
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
