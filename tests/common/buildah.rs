//! buildah on a private storage (vfs driver, chroot isolation, no daemon): real images built
//! as a pipeline builds them, `FROM` a base, with the OCI base annotations buildah writes.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Buildah {
    dir: tempfile::TempDir,
    /// `Some(t)`: every commit sets `created` to `t` (epoch seconds), as reproducible build
    /// tools do (Bazel rules_oci, ko, apko and Google's distroless use the epoch).
    timestamp: Option<i64>,
}

impl Buildah {
    /// A private buildah, or `None` (loudly) where buildah is missing and CI is not set.
    pub fn new(test: &str) -> Option<Buildah> {
        if !super::require("buildah", test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("stalewatch-buildah-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Some(Buildah { dir, timestamp: None })
    }

    /// Every later commit reproducible: `created` fixed at `t` (`buildah commit --timestamp`).
    pub fn reproducible(mut self, t: i64) -> Buildah {
        self.timestamp = Some(t);
        self
    }

    /// `buildah commit -q --rm CONTAINER NAME`, with the fixed timestamp when reproducible.
    fn commit(&self, c: &str, name: &str) {
        let t = self.timestamp.map(|t| t.to_string());
        let mut args = vec!["commit", "-q", "--rm"];
        if let Some(t) = &t {
            args.extend(["--timestamp", t.as_str()]);
        }
        args.extend([c, name]);
        self.run(&args);
    }

    /// Runs buildah; its stdout, trimmed.
    pub fn run(&self, args: &[&str]) -> String {
        run_at(self.dir.path(), args)
    }

    /// `name`: an Alpine minirootfs from the shared data as a one-layer image.
    pub fn alpine(&self, version: &str, name: &str) {
        let tgz =
            super::shared_data().join(format!("rootfs/alpine/alpine-minirootfs-{version}-x86_64.tar.gz"));
        let c = self.run(&["from", "scratch"]);
        self.run(&["add", &c, tgz.to_str().unwrap(), "/"]);
        self.commit(&c, name);
    }

    /// `name`: `FROM from`, with files written over it and labels set, one layer more.
    pub fn derive(&self, from: &str, files: &[(&str, &[u8])], labels: &[(&str, &str)], name: &str) {
        let c = self.run(&["from", "--pull=never", from]);
        for (i, (path, bytes)) in files.iter().enumerate() {
            let f = self.dir.path().join(format!("tmp/file-{i}"));
            std::fs::write(&f, bytes).unwrap();
            self.run(&["copy", &c, f.to_str().unwrap(), path]);
        }
        for (k, v) in labels {
            self.run(&["config", "--label", &format!("{k}={v}"), &c]);
        }
        self.commit(&c, name);
    }

    /// Builds a Containerfile (no `RUN`: chroot isolation needs none of it).
    pub fn bud(&self, containerfile: &str, name: &str) {
        let ctx = self.dir.path().join("context");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
        self.run(&[
            "bud",
            "-q",
            "--pull=never",
            "--isolation",
            "chroot",
            "-t",
            name,
            "-f",
            ctx.join("Containerfile").to_str().unwrap(),
            ctx.to_str().unwrap(),
        ]);
    }

    /// `name` as an OCI layout directory.
    pub fn oci_dir(&self, name: &str, out: &Path) -> PathBuf {
        self.run(&["push", "-q", name, &format!("oci:{}", out.display())]);
        out.to_path_buf()
    }

    /// `name` as an OCI archive whose ref name is its tag (`ctr images import --base-name
    /// REPO` names it `REPO:TAG`).
    pub fn oci_archive(&self, name: &str, out: &Path) -> PathBuf {
        let tag = name.rsplit(':').next().unwrap();
        self.run(&[
            "push",
            "-q",
            name,
            &format!("oci-archive:{}:{tag}", out.display()),
        ]);
        out.to_path_buf()
    }
}

/// The layer digests (bottom first) of a one-image OCI layout directory.
pub fn layout_layers(layout: &Path) -> Vec<String> {
    let read =
        |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = read(layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    );
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// (name, version) of every package an apk `installed` database lists: the P: and V: lines.
pub fn apk_packages(db: &[u8]) -> std::collections::BTreeSet<(String, String)> {
    let text = String::from_utf8_lossy(db);
    let mut out = std::collections::BTreeSet::new();
    for record in text.split("\n\n") {
        let field = |k: &str| record.lines().find_map(|l| l.strip_prefix(k)).map(str::to_string);
        if let (Some(p), Some(v)) = (field("P:"), field("V:")) {
            out.insert((p, v));
        }
    }
    out
}

/// The `lib/apk/db/installed` of an Alpine minirootfs from the shared data.
pub fn alpine_installed(version: &str) -> Vec<u8> {
    let tgz = super::shared_data().join(format!("rootfs/alpine/alpine-minirootfs-{version}-x86_64.tar.gz"));
    let out = Command::new("tar")
        .args(["-xzOf", tgz.to_str().unwrap(), "./lib/apk/db/installed"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// buildah on the storage under `dir` (`storage`, `run`, `tmp`); its stdout, trimmed.
pub fn run_at(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("buildah")
        .args(["--root", &format!("{}/storage", dir.display())])
        .args(["--runroot", &format!("{}/run", dir.display())])
        .args(["--storage-driver", "vfs"])
        .args(args)
        .env("TMPDIR", dir.join("tmp"))
        .output()
        .expect("run buildah");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Alpine 3.16.9's `installed` database as `apk upgrade` of busybox (and its ssl_client) to
/// 1.35.0-r18 records it: the version that fixes ALPINE-CVE-2023-42366. Checked to change.
pub fn alpine_installed_busybox_upgraded() -> String {
    let original = alpine_installed("3.16.9");
    let patched = String::from_utf8(original.clone())
        .unwrap()
        .replace("V:1.35.0-r17\n", "V:1.35.0-r18\n");
    assert_ne!(patched.as_bytes(), original, "busybox's version changed");
    patched
}

/// base:1 (Alpine 3.16.9), app:1 FROM it (curl added), then base:1 rebuilt with busybox and
/// ssl_client at their fixed version: the three as (OCI layout, OCI archive), in that order.
pub fn rebuild_images(b: &Buildah, dir: &Path) -> [(PathBuf, PathBuf); 3] {
    rebuild_images_in(b, dir, "localhost")
}

/// [`rebuild_images`] named under `repo` (`127.0.0.1:5000`).
pub fn rebuild_images_in(b: &Buildah, dir: &Path, repo: &str) -> [(PathBuf, PathBuf); 3] {
    let (base_name, app_name) = (format!("{repo}/base:1"), format!("{repo}/app:1"));
    b.alpine("3.16.9", &base_name);
    let mut app_db = alpine_installed("3.16.9");
    app_db.extend_from_slice(b"P:curl\nV:7.83.1-r0\nA:x86_64\no:curl\n\n");
    b.derive(
        &base_name,
        &[("/lib/apk/db/installed", &app_db)],
        &[("org.opencontainers.image.revision", "0123abc")],
        &app_name,
    );
    let save = |name: &str, as_: &str| {
        (
            b.oci_dir(name, &dir.join(as_)),
            b.oci_archive(name, &dir.join(format!("{as_}.tar"))),
        )
    };
    let (base, app) = (save(&base_name, "base"), save(&app_name, "app"));
    // The patched base: what `apk upgrade` of busybox would record, in a layer of its own.
    let patched = alpine_installed_busybox_upgraded();
    b.derive(
        &base_name,
        &[("/lib/apk/db/installed", patched.as_bytes())],
        &[],
        &base_name,
    );
    let new_base = save(&base_name, "base-new");
    [base, app, new_base]
}

/// The config of a one-image OCI layout directory.
pub fn layout_config(layout: &Path) -> serde_json::Value {
    let read =
        |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index = read(layout.join("index.json"));
    let manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    read(blob(manifest["config"]["digest"].as_str().unwrap()))
}
