//! The node is a runtime too (issue 28): with `--node-scan on --host-root /` the agent reads
//! this machine's own OS packages — a real Debian 12 host — and its findings equal the
//! independent oracle (`tests/support/debian_oracle.py`: dpkg's own list and
//! `dpkg --compare-versions` over the Debian records of ../shared/data); the running kernel,
//! which no installed package is here, is said `unknown`, never left out silently.

mod common;

use common::agent::{value, Agent};
use common::cloudevents::Receiver;
use common::mirror::Mirror;
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn this_debian_hosts_own_packages_are_matched_as_dpkg_says_and_its_kernel_is_unknown() {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release.contains("ID=debian") || !os_release.contains("VERSION_ID=\"12\"") {
        assert!(
            std::env::var_os("CI").is_none(),
            "the node test needs a Debian 12 host (this project's CI machine)"
        );
        eprintln!("skipped: not a Debian 12 host");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(shared_data().join("osv"));
    let receiver = Receiver::start(&tmp.path().join("receiver"), "202", 0.0);
    let agent = Agent::start(
        &tmp.path().join("no-containerd.sock"),
        &tmp.path().join("state"),
        &mirror.url(),
        &[
            "--ecosystem",
            "Debian",
            "--node-scan",
            "on",
            "--host-root",
            "/",
            "--notify-url",
            &receiver.url,
            "--notify-min-severity",
            "low",
        ],
    );
    let doc = |a: &Agent| -> serde_json::Value { serde_json::from_str(&a.findings().1).unwrap() };
    agent.wait_for("the node matched", Duration::from_secs(120), |a| {
        doc(a)["node_scan"]["status"] == "ok"
    });
    let doc = doc(&agent);
    let report = &doc["node_report"];
    assert_eq!(report["target"], "node:test-node");
    assert_eq!(report["os"]["ecosystem"], "Debian:12");
    let got: BTreeSet<(String, String)> = string_pairs(&report["findings"], "id", "package")
        .into_iter()
        .collect();
    let want = debian_oracle("/");
    assert!(want.len() > 100, "the oracle found {} findings", want.len());
    let missing: Vec<_> = want.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} findings, the oracle {}: missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
    // Every installed package is listed.
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}\n"])
        .output()
        .unwrap();
    let n = String::from_utf8_lossy(&installed.stdout)
        .lines()
        .filter(|l| *l == "installed")
        .count();
    assert_eq!(report["packages"].as_array().unwrap().len(), n);

    // The kernel: this machine's is not packaged, so it is unknown, and said so.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let kernel = &doc["node_scan"]["kernel"];
    assert_eq!(kernel["release"], release.trim());
    assert_eq!(kernel["state"], "unknown");
    let m = agent.metrics();
    assert_eq!(
        value(
            &m,
            "stalewatch_node_kernel_info",
            &[
                ("release", release.trim()),
                ("package", ""),
                ("version", ""),
                ("state", "unknown")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "stalewatch_node_scan_status", &[("status", "ok")]),
        Some(1.0)
    );
    let total: f64 = ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .flat_map(|s| ["true", "false"].map(|f| (*s, f)))
        .filter_map(|(s, f)| {
            value(
                &m,
                "stalewatch_node_vulnerabilities",
                &[("severity", s), ("fixable", f)],
            )
        })
        .sum();
    assert!(
        total > 0.0 && total <= got.len() as f64,
        "{total} vulnerabilities of {} findings",
        got.len()
    );
}

/// The host root as the DaemonSet mounts it: its own filesystem (here a tmpfs) holding the
/// host's os-release, and the host's `/var/lib/dpkg` bind-mounted read-only under it — another
/// filesystem, which the node scan enters (a container root's walk never would). The packages
/// found are those `dpkg-query` lists installed.
#[test]
fn a_host_root_made_of_mounts_is_read_across_them() {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release.contains("ID=debian") {
        assert!(
            std::env::var_os("CI").is_none(),
            "the node test needs a Debian host"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let mount = |args: &[&str]| {
        let st = std::process::Command::new("mount").args(args).status().unwrap();
        assert!(st.success(), "mount {args:?}");
    };
    mount(&["-t", "tmpfs", "-o", "size=8m", "tmpfs", host.to_str().unwrap()]);
    let _host = Unmount(host.clone());
    std::fs::create_dir_all(host.join("etc")).unwrap();
    std::fs::create_dir_all(host.join("var/lib/dpkg")).unwrap();
    std::fs::write(host.join("etc/os-release"), &os_release).unwrap();
    let dpkg = host.join("var/lib/dpkg");
    mount(&["--bind", "-o", "ro", "/var/lib/dpkg", dpkg.to_str().unwrap()]);
    let _dpkg = Unmount(dpkg);
    let (_mirror, _agent, doc) = node_agent(tmp.path(), &host, &["Debian"]);
    assert_eq!(doc["node_scan"]["status"], "ok", "{:#}", doc["node_scan"]);
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}\n"])
        .output()
        .unwrap();
    let installed = String::from_utf8(installed.stdout)
        .unwrap()
        .lines()
        .filter(|l| *l == "installed")
        .count();
    assert_eq!(
        doc["node_report"]["packages"].as_array().unwrap().len(),
        installed
    );
}

/// An agent scanning the node under `host` (no containerd) with these ecosystems, once the
/// node is matched, and its `/v1/findings`.
fn node_agent(
    dir: &std::path::Path,
    host: &std::path::Path,
    ecosystems: &[&str],
) -> (Mirror, Agent, serde_json::Value) {
    node_agent_on(dir, host, ecosystems, shared_data().join("osv"))
}

/// [`node_agent`] against the mirror served from `mirror_root`.
fn node_agent_on(
    dir: &std::path::Path,
    host: &std::path::Path,
    ecosystems: &[&str],
    mirror_root: std::path::PathBuf,
) -> (Mirror, Agent, serde_json::Value) {
    let mirror = Mirror::start(mirror_root);
    let mut args = vec!["--node-scan", "on", "--host-root", host.to_str().unwrap()];
    for e in ecosystems {
        args.extend(["--ecosystem", e]);
    }
    let agent = Agent::start(
        &dir.join("no-containerd.sock"),
        &dir.join("state"),
        &mirror.url(),
        &args,
    );
    let doc = |a: &Agent| -> serde_json::Value { serde_json::from_str(&a.findings().1).unwrap() };
    agent.wait_for("the node matched", Duration::from_secs(120), |a| {
        !doc(a)["node_report"].is_null()
    });
    let d = doc(&agent);
    (mirror, agent, d)
}

/// A host root shaped like an AKS Ubuntu 22.04 node that installed the fixed kernel of
/// USN-7596-1 but still runs the one before (unattended-upgrades waits for a reboot), against
/// the mirror's Ubuntu records and Canonical's record of CVE-2025-21675
/// (tests/fixtures/osv/ubuntu-kernel): the running kernel is the package of its release and
/// carries the finding — its signed image (source `linux-signed-azure-6.8`) matched as the
/// record's `linux-azure-6.8` — the installed fix is not judged, and a reboot is due.
#[test]
fn a_fixed_kernel_installed_but_not_booted_leaves_the_node_vulnerable_until_a_reboot() {
    let tmp = tempfile::tempdir().unwrap();
    let host = ubuntu_node_waiting_for_a_reboot(tmp.path());
    let mirror_root = tmp.path().join("mirror");
    let mut records = osv_records(&shared_data().join("osv/Ubuntu/all.zip"));
    let kernel_record = "UBUNTU-CVE-2025-21675.json";
    records.push((
        kernel_record.to_string(),
        std::fs::read(
            project()
                .join("tests/fixtures/osv/ubuntu-kernel")
                .join(kernel_record),
        )
        .unwrap(),
    ));
    let refs: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    write_osv_zip(&mirror_root, "Ubuntu", &refs);
    let (_mirror, agent, doc) = node_agent_on(tmp.path(), &host, &["Ubuntu"], mirror_root);
    let kernel = &doc["node_scan"]["kernel"];
    assert_eq!(kernel["state"], "packaged");
    assert_eq!(kernel["package"], "linux-image-6.8.0-1020-azure");
    assert_eq!(kernel["version"], "6.8.0-1020.23~22.04.1");
    assert_eq!(kernel["newer_installed"], "6.8.0-1030.35~22.04.1");
    assert_eq!(doc["node_scan"]["reboot_required"], true);
    let names: Vec<&str> = doc["node_report"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "linux-image-6.8.0-1020-azure",
            "linux-modules-6.8.0-1020-azure",
            "openssh-server"
        ],
        "the installed, not booted, kernel and its modules are not judged"
    );
    // The record's rule, by hand: `linux-azure-6.8` below 6.8.0-1030.35~22.04.1 is affected
    // (`dpkg --compare-versions 6.8.0-1020.23~22.04.1 lt 6.8.0-1030.35~22.04.1`).
    assert!(dpkg_lt("6.8.0-1020.23~22.04.1", "6.8.0-1030.35~22.04.1"));
    let kernel_findings: BTreeSet<(String, String, String)> = doc["node_report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "UBUNTU-CVE-2025-21675")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("package"), s("fixed_version"), s("severity"))
        })
        .collect();
    let expected = |package: &str| {
        (
            package.to_string(),
            "6.8.0-1030.35~22.04.1".to_string(),
            "medium".to_string(),
        )
    };
    assert_eq!(
        kernel_findings,
        BTreeSet::from([
            expected("linux-image-6.8.0-1020-azure"),
            expected("linux-modules-6.8.0-1020-azure")
        ])
    );
    assert_eq!(
        value(&agent.metrics(), "stalewatch_node_reboot_required", &[]),
        Some(1.0)
    );
}

fn dpkg_lt(a: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .unwrap()
        .success()
}

/// Every record of an OSV `all.zip` (name, bytes).
fn osv_records(zip: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut body = Vec::new();
            f.read_to_end(&mut body).unwrap();
            (f.name().to_string(), body)
        })
        .collect()
}

/// The runtime's binaries outside the OS's packages (AKS's moby-containerd): a node root whose
/// `containerd` is a Go binary built here with golang.org/x/text v0.3.2 is matched against the
/// Go feed — the real advisories of that version (GO-2020-0015, GO-2021-0113) — while nothing
/// else of the host is read.
#[test]
fn a_runtime_binary_s_go_modules_are_matched_against_the_go_feed() {
    if !require("go", "node runtime binaries") || !require("strip", "node runtime binaries") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    std::fs::create_dir_all(host.join("etc")).unwrap();
    std::fs::create_dir_all(host.join("var/lib/dpkg")).unwrap();
    std::fs::write(host.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    std::fs::write(
        host.join("var/lib/dpkg/status"),
        "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u8\n\n",
    )
    .unwrap();
    go_binary(tmp.path(), &host.join("usr/bin/containerd"), true);
    // A Go binary elsewhere on the host is never opened: only the runtime's paths are.
    go_binary(tmp.path(), &host.join("opt/other/tool"), true);
    let (_mirror, _agent, doc) = node_agent(tmp.path(), &host, &["Go", "Debian"]);
    assert_eq!(doc["node_scan"]["status"], "ok");
    let report = doc["node_report"].clone();
    let paths: BTreeSet<String> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "Go")
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, BTreeSet::from(["usr/bin/containerd".to_string()]));
    let ids: BTreeSet<(String, String)> = string_pairs(&report["findings"], "package", "id")
        .into_iter()
        .collect();
    for id in ["GO-2020-0015", "GO-2021-0113"] {
        assert!(
            ids.contains(&("golang.org/x/text".into(), id.into())),
            "{id}: {ids:?}"
        );
    }
}

/// An Azure Linux 3 node (its rpm database built here with rpmbuild, as tests/azure_linux.rs
/// does): the node's findings are those the feed's own rule gives over its source rpms
/// (tests/support/azl_oracle.py, rpm's comparison) — the node is matched like an image.
#[test]
fn an_azure_linux_node_is_matched_by_source_rpm_like_its_images() {
    if !require("rpmbuild", "Azure Linux node") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("azl");
    run_script("make-rpm-root.sh", &[fixture.to_str().unwrap(), "azurelinux"]);
    let host = fixture.join("rpmdb");
    let (_mirror, _agent, doc) = node_agent(tmp.path(), &host, &["Azure Linux"]);
    assert_eq!(doc["node_scan"]["status"], "ok");
    let report = &doc["node_report"];
    assert_eq!(report["os"]["ecosystem"], "Azure Linux:3");
    let out = std::process::Command::new("python3")
        .arg(project().join("tests/support/azl_oracle.py"))
        .arg(&host)
        .arg("Azure Linux:3")
        .arg(shared_data().join("osv/Azure Linux/all.zip"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(want.len() >= 10, "{want:?}");
    assert_eq!(
        string_rows(&report["findings"], &["id", "package", "severity"]),
        want
    );
    // No kernel rpm in this root: the running kernel is unknown, and said so.
    assert_eq!(doc["node_scan"]["kernel"]["state"], "unknown");
}
