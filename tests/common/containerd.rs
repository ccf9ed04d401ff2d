//! A private containerd for tests: its own root, state, socket and mount namespace (a private
//! /run, so shim sockets never touch the host's), stopped and removed on drop. Only the
//! processes it started are ever signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pid: u32,
    child: std::process::Child,
}

pub const NAMESPACE: &str = "k8s.io";

impl Lab {
    /// Starts containerd, or returns `None` (loudly) where it is not installed and CI is not set.
    pub fn start(test: &str) -> Option<Lab> {
        if !super::require("containerd", test) || !super::require("ctr", test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("stalewatch-ctrd-")
            .tempdir()
            .unwrap();
        let base = dir.path().to_path_buf();
        let base = base.as_path();
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
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."*"]
      endpoint = ["http://127.0.0.1:1"]
"#,
            b = base.display(),
            s = sock.display()
        );
        std::fs::write(base.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(base.join("containerd.log")).unwrap();
        let script = format!(
            "mount -n --bind '{}' /run && exec containerd --config '{}'",
            base.join("run").display(),
            base.join("config.toml").display()
        );
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
        let lab = Lab {
            dir,
            sock,
            pid: child.id(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if Command::new("ctr")
                .arg("-a")
                .arg(&lab.sock)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Some(lab);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "containerd did not come up: {}",
            std::fs::read_to_string(base.join("containerd.log")).unwrap_or_default()
        );
    }

    /// `ctr` in containerd's mount namespace (so its FIFOs stay private), namespace k8s.io.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "ctr", "-a"])
            .arg(&self.sock)
            .args(["-n", NAMESPACE])
            .args(args)
            .output()
            .unwrap();
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        // setsid, unshare and sh exec into containerd: the child's pid is containerd's.
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
