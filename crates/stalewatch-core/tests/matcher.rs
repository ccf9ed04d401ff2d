//! The matcher on a table of real advisories (real ids, packages and fixed versions, records
//! trimmed to what matching reads), against inventories as the catalogers build them.

use stalewatch_core::advisory::{EcosystemIndex, IndexSet, Severity};
use stalewatch_core::catalog::Inventory;
use stalewatch_core::matcher::{match_inventory, Finding};
use stalewatch_core::package::Package;

const RECORDS: &[(&str, &str)] = &[
    (
        "Debian",
        r#"{"id":"DEBIAN-CVE-2023-0286","modified":"2023-07-14T07:39:10Z","upstream":["CVE-2023-0286"],"details":"There is a type confusion vulnerability relating to X.400 address processing inside an X.509 GeneralName.","affected":[
        {"package":{"ecosystem":"Debian:11","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1n-0+deb11u4"}]}]},
        {"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.8-1"}]}]}]}"#,
    ),
    (
        "AlmaLinux",
        r#"{"id":"ALSA-2024:6783","summary":"Moderate: openssl security update","published":"2024-09-18T00:00:00Z","affected":[
        {"package":{"ecosystem":"AlmaLinux:9","name":"openssl-libs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:3.0.7-28.el9_4"}]}]}]}"#,
    ),
    (
        "npm",
        r#"{"id":"NSWG-ECO-151","published":"2016-09-28T00:00:00Z","severity":[{"type":"CVSS_V3","score":"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:N"}],"affected":[
        {"package":{"ecosystem":"npm","name":"passport-azure-ad"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"fixed":"1.4.6"}]},{"type":"SEMVER","events":[{"introduced":"2.0.0"},{"last_affected":"2.0.0"}]}]}]}"#,
    ),
    (
        "crates.io",
        r#"{"id":"RUSTSEC-2019-0031","withdrawn":"2020-10-08T12:00:00Z","affected":[
        {"package":{"ecosystem":"crates.io","name":"spin"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0.0.0-0"}]}]}]}"#,
    ),
    (
        "crates.io",
        r#"{"id":"RUSTSEC-2021-0078","aliases":["CVE-2021-32715","GHSA-5h46-h7hh-c6x9"],"summary":"Lenient `hyper` header parsing of `Content-Length` could allow request smuggling","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N"}],"affected":[
        {"package":{"ecosystem":"crates.io","name":"hyper"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0.0.0-0"},{"fixed":"0.14.10"}]}]}]}"#,
    ),
    (
        "crates.io",
        r#"{"id":"RUSTSEC-2022-0025","aliases":["CVE-2022-1473"],"summary":"Resource leakage when decoding certificates and keys","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],"affected":[
        {"package":{"ecosystem":"crates.io","name":"openssl-src"},"ranges":[{"type":"SEMVER","events":[{"introduced":"300.0.0"},{"fixed":"300.0.6"}]}]}]}"#,
    ),
    (
        "Alpine",
        r#"{"id":"ALPINE-CVE-2022-1473","upstream":["CVE-2022-1473"],"affected":[
        {"package":{"ecosystem":"Alpine:v3.17","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.3-r0"}]}]}]}"#,
    ),
    // AlmaLinux 9's nodejs: the non-modular 16 and the module streams 18, 20 and 22 share the
    // package name; a modular fix says its stream only in the summary (real records, trimmed).
    (
        "AlmaLinux",
        r#"{"id":"ALSA-2023:3586","summary":"Important: nodejs security update","affected":[
        {"package":{"ecosystem":"AlmaLinux:9","name":"nodejs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:16.19.1-2.el9_2"}]}]}]}"#,
    ),
    (
        "AlmaLinux",
        r#"{"id":"ALSA-2023:3577","summary":"Important: nodejs:18 security update","affected":[
        {"package":{"ecosystem":"AlmaLinux:9","name":"nodejs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:18.14.2-3.module_el9.2.0+30+e3312493"}]}]}]}"#,
    ),
    (
        "AlmaLinux",
        r#"{"id":"ALSA-2024:1688","summary":"Important: nodejs:20 security update","affected":[
        {"package":{"ecosystem":"AlmaLinux:9","name":"nodejs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:20.11.1-1.module_el9.3.0+88+29afeaa2"}]}]}]}"#,
    ),
    (
        "AlmaLinux",
        r#"{"id":"ALSA-2025:1613","summary":"Important: nodejs:22 security update","affected":[
        {"package":{"ecosystem":"AlmaLinux:9","name":"nodejs"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:22.13.1-1.module_el9.5.0+139+09296491"}]}]}]}"#,
    ),
    // Red Hat names a modular build's stream in the affected package's purl (`rpmmod`, Red
    // Hat's security-data guidelines for scanning vendors). Written in that shape: the id, the
    // stream and the upstream version are RHSA-2024:1688's (AlmaLinux's ALSA-2024:1688 above
    // rebuilds it); the release's build ids and the label's version/context are illustrative
    // (no Red Hat record is in the data here) — only the stream is judged.
    (
        "Red Hat",
        r#"{"id":"RHSA-2024:1688","summary":"Important: nodejs:20 security update","affected":[
        {"package":{"ecosystem":"Red Hat:enterprise_linux:9::appstream","name":"nodejs","purl":"pkg:rpm/redhat/nodejs?arch=x86_64&epoch=1&rpmmod=nodejs:20:9030020240315084024:rhel9"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:20.11.1-1.module+el9.3.0+21556+3f7d6bd0"}]}]}]}"#,
    ),
    // Red Hat's fixed versions carry the epoch. RHSA-2022:6224's openssl fix for RHEL 9
    // (1:3.0.1-41.el9_0, in baseos and appstream: Red Hat's security data for CVE-2022-1473).
    (
        "Red Hat",
        r#"{"id":"RHSA-2022:6224","upstream":["CVE-2022-1473"],"summary":"Moderate: openssl security and bug fix update","affected":[
        {"package":{"ecosystem":"Red Hat:enterprise_linux:9::baseos","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:3.0.1-41.el9_0"}]}]},
        {"package":{"ecosystem":"Red Hat:enterprise_linux:9::appstream","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:3.0.1-41.el9_0"}]}]}]}"#,
    ),
    // Kernels: the records name the kernel's source, a signed image's source only wraps it.
    // Canonical's UBUNTU-CVE-2025-21675 (osv/cve/2025, ubuntu-security-notices @021fce0b),
    // trimmed to its Ubuntu 22.04 `linux-azure-6.8` entry (USN-7596-1's fix).
    (
        "Ubuntu",
        r#"{"id":"UBUNTU-CVE-2025-21675","upstream":["CVE-2025-21675"],"severity":[{"type":"Ubuntu","score":"medium"}],"affected":[
        {"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"linux-azure-6.8"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"6.8.0-1030.35~22.04.1"}]}]}]}"#,
    ),
    (
        "Debian",
        r#"{"id":"DEBIAN-CVE-2023-0386","modified":"2023-07-14T07:39:10Z","upstream":["CVE-2023-0386"],"affected":[
        {"package":{"ecosystem":"Debian:11","name":"linux"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"5.10.179-1"}]}]},
        {"package":{"ecosystem":"Debian:12","name":"linux"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"6.1.11-1"}]}]}]}"#,
    ),
];

fn db() -> IndexSet {
    let mut by_eco: std::collections::BTreeMap<&str, EcosystemIndex> = Default::default();
    for (eco, json) in RECORDS {
        by_eco
            .entry(eco)
            .or_insert_with(|| EcosystemIndex::new(eco))
            .add_record_json(json.as_bytes());
    }
    IndexSet::from_indexes(by_eco.into_values().collect()).unwrap()
}

fn pkg(eco: &str, name: &str, version: &str, source: Option<(&str, &str)>) -> Package {
    let (sn, sv) = source.unwrap_or((name, version));
    Package {
        ecosystem: eco.into(),
        name: name.into(),
        version: version.into(),
        source_name: sn.into(),
        source_version: sv.into(),
        purl: Default::default(),
        path: "db".into(),
        arch: Default::default(),
        layer: None,
        introduced_layer: None,
    }
}

fn run(packages: Vec<Package>) -> Vec<Finding> {
    match_inventory(
        &Inventory {
            os: None,
            packages: packages.into(),
            databases: vec![],
            ..Default::default()
        },
        &db(),
    )
    .unwrap()
}

fn brief(f: &Finding) -> (String, String, Option<String>, Severity) {
    (
        f.id.to_string(),
        f.package.to_string(),
        f.fixed_version.as_deref().map(str::to_string),
        f.severity,
    )
}

#[test]
fn distro_records_match_source_packages_of_their_own_release_only() {
    let found = run(vec![
        pkg("Debian:12", "libssl3", "3.0.2-1", Some(("openssl", "3.0.2-1"))),
        pkg("Debian:12", "openssl", "3.0.11-1~deb12u2", None),
        pkg(
            "Debian:11",
            "libssl1.1",
            "1.1.1n-0+deb11u3",
            Some(("openssl", "1.1.1n-0+deb11u3")),
        ),
        pkg(
            "Debian:10",
            "libssl1.1",
            "1.1.1d-0+deb10u1",
            Some(("openssl", "1.1.1d-0+deb10u1")),
        ),
    ]);
    let got: Vec<_> = found.iter().map(brief).collect();
    assert_eq!(
        got,
        vec![
            (
                "DEBIAN-CVE-2023-0286".into(),
                "libssl1.1".into(),
                Some("1.1.1n-0+deb11u4".into()),
                Severity::Unknown
            ),
            (
                "DEBIAN-CVE-2023-0286".into(),
                "libssl3".into(),
                Some("3.0.8-1".into()),
                Severity::Unknown
            ),
        ]
    );
    assert_eq!(*found[0].aliases, ["CVE-2023-0286".to_string()]);
    assert!(found.iter().all(|f| f.fixable));
}

#[test]
fn rpm_records_match_binary_packages_with_epochs() {
    let found = run(vec![
        pkg(
            "AlmaLinux:9",
            "openssl-libs",
            "1:3.0.7-27.el9",
            Some(("openssl", "1:3.0.7-27.el9")),
        ),
        pkg(
            "AlmaLinux:9",
            "openssl-libs",
            "1:3.0.7-28.el9_4",
            Some(("openssl", "1:3.0.7-28.el9_4")),
        ),
        pkg(
            "AlmaLinux:8",
            "openssl-libs",
            "1:1.1.1k-7.el8",
            Some(("openssl", "1:1.1.1k-7.el8")),
        ),
    ]);
    let got: Vec<_> = found.iter().map(brief).collect();
    assert_eq!(
        got,
        vec![(
            "ALSA-2024:6783".into(),
            "openssl-libs".into(),
            Some("1:3.0.7-28.el9_4".into()),
            Severity::Medium
        )]
    );
    assert_eq!(found[0].published.as_deref(), Some("2024-09-18T00:00:00Z"));
}

#[test]
fn semver_ranges_fixed_and_last_affected() {
    let found = run(vec![
        pkg("npm", "passport-azure-ad", "1.4.5", None),
        pkg("npm", "passport-azure-ad", "1.4.6", None),
        pkg("npm", "passport-azure-ad", "2.0.0", None),
        pkg("npm", "passport-azure-ad", "2.0.1", None),
        pkg("crates.io", "hyper", "0.14.9", None),
        pkg("crates.io", "hyper", "0.14.10", None),
    ]);
    let got: Vec<_> = found
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.installed_version.clone(),
                f.fixed_version.clone(),
                f.fixable,
                f.severity,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // CVSS 3.0 AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:N = 10.0; 3.1 …/I:L/A:N = 5.3.
            (
                "NSWG-ECO-151".into(),
                "1.4.5".into(),
                Some("1.4.6".into()),
                true,
                Severity::Critical
            ),
            (
                "NSWG-ECO-151".into(),
                "2.0.0".into(),
                None,
                false,
                Severity::Critical
            ),
            (
                "RUSTSEC-2021-0078".into(),
                "0.14.9".into(),
                Some("0.14.10".into()),
                true,
                Severity::Medium
            ),
        ]
    );
    assert_eq!(found[2].cvss_score, Some(5.3));
}

#[test]
fn withdrawn_records_are_ignored_and_aliases_lend_severity() {
    let found = run(vec![
        pkg("crates.io", "spin", "0.5.0", None),
        pkg(
            "Alpine:v3.17",
            "libssl3",
            "3.0.2-r0",
            Some(("openssl", "3.0.2-r0")),
        ),
    ]);
    let got: Vec<_> = found.iter().map(brief).collect();
    // ALPINE-CVE-2022-1473 carries no severity; RUSTSEC-2022-0025, an alias of the same CVE,
    // scores 7.5 (high).
    assert_eq!(
        got,
        vec![(
            "ALPINE-CVE-2022-1473".into(),
            "libssl3".into(),
            Some("3.0.3-r0".into()),
            Severity::High
        )]
    );
}

#[test]
fn output_is_deterministic() {
    let pkgs = vec![
        pkg("npm", "passport-azure-ad", "1.4.5", None),
        pkg("Debian:12", "libssl3", "3.0.2-1", Some(("openssl", "3.0.2-1"))),
        pkg("crates.io", "hyper", "0.14.9", None),
    ];
    let mut reversed = pkgs.clone();
    reversed.reverse();
    let found = run(pkgs);
    // Three packages, each affected: an empty result would compare equal to itself.
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found, run(reversed));
}

/// A matcher shared by several inventories (the agent's re-match pass) remembers verdicts;
/// each inventory still gets exactly the findings a fresh matcher gives it.
#[test]
fn a_shared_matcher_gives_each_inventory_its_own_findings() {
    let db = db();
    let inventories = [
        vec![
            pkg("Debian:12", "libssl3", "3.0.7-1", Some(("openssl", "3.0.7-1"))),
            pkg("Debian:12", "openssl", "3.0.7-1", None),
        ],
        vec![pkg(
            "Debian:12",
            "libssl3",
            "3.0.8-1",
            Some(("openssl", "3.0.8-1")),
        )],
        vec![
            pkg("Debian:12", "libssl3", "3.0.7-1", Some(("openssl", "3.0.7-1"))),
            pkg("crates.io", "hyper", "0.14.9", None),
        ],
        // Unaffected packages are remembered too: the fixed version again, beside an
        // affected one of the same package.
        vec![
            pkg("Debian:12", "libssl3", "3.0.8-1", Some(("openssl", "3.0.8-1"))),
            pkg("Debian:12", "openssl", "3.0.7-1", None),
        ],
        // A memo key that joined its fields without their lengths would give `openssl3` at
        // `.0.7-1` openssl's verdicts at 3.0.7-1.
        vec![pkg("Debian:12", "openssl3", ".0.7-1", None)],
    ];
    let inv = |packages: &Vec<Package>| Inventory {
        os: None,
        packages: packages.clone().into(),
        databases: vec![],
        ..Default::default()
    };
    let mut shared = stalewatch_core::matcher::Matcher::new(&db);
    let mut counts = Vec::new();
    for packages in &inventories {
        let from_shared = shared.match_inventory(&inv(packages)).unwrap();
        assert_eq!(from_shared, match_inventory(&inv(packages), &db).unwrap());
        counts.push(from_shared.len());
    }
    // 3.0.7-1 is affected through both binary packages, 3.0.8-1 is the fix, hyper is affected.
    assert_eq!(counts, vec![2, 0, 2, 1, 0]);
}

/// An rpm built in a module, as the rpm cataloger gives it: its label in the purl.
fn modular(eco: &str, version: &str, label: Option<&str>) -> Package {
    let mut p = pkg(eco, "nodejs", version, None);
    p.purl = match label {
        Some(l) => format!(
            "pkg:rpm/almalinux/nodejs@{version}?arch=x86_64&rpmmod={}",
            l.replace(':', "%3A")
        ),
        None => format!("pkg:rpm/almalinux/nodejs@{version}?arch=x86_64"),
    }
    .into();
    p
}

/// Module streams: a modular build is judged only by its stream's records, a non-modular one
/// never by a module's (the expected sets are written from the records above, with reasons).
#[test]
fn module_streams_judge_only_their_own_builds() {
    let ids = |found: &[Finding]| -> Vec<String> { found.iter().map(|f| f.id.to_string()).collect() };
    // nodejs:18 at 1:18.14.2-2: ALSA-2023:3577 (nodejs:18, fixed in -3). Not the nodejs:20 and
    // :22 fixes (20.x and 22.x are above 18.x: without streams both would match), not the
    // non-modular 16 fix.
    let n18 = modular(
        "AlmaLinux:9",
        "1:18.14.2-2.module_el9.2.0+29+de583a0b",
        Some("nodejs:18:9020020230531:rhel9"),
    );
    assert_eq!(ids(&run(vec![n18])), vec!["ALSA-2023:3577"]);
    // nodejs:20 at 1:20.11.0: ALSA-2024:1688 only.
    let n20 = modular(
        "AlmaLinux:9",
        "1:20.11.0-1.module_el9.3.0+82+a1b2c3d4",
        Some("nodejs:20:9030020240101:rhel9"),
    );
    assert_eq!(ids(&run(vec![n20])), vec!["ALSA-2024:1688"]);
    // The non-modular nodejs 16 at 1:16.19.1-1: ALSA-2023:3586 only (every module fix is
    // higher, and none is its).
    let n16 = modular("AlmaLinux:9", "1:16.19.1-1.el9_2", None);
    assert_eq!(ids(&run(vec![n16])), vec!["ALSA-2023:3586"]);
    // Red Hat: the stream from the purl. nodejs:20 below the fix → RHSA-2024:1688; nodejs:18
    // or a non-modular nodejs of the same version → nothing of Red Hat's.
    let rh = |label: Option<&str>| {
        modular(
            "Red Hat:enterprise_linux:9::",
            "1:20.10.0-1.module+el9.3.0+20000+aaaaaaaa",
            label,
        )
    };
    assert_eq!(
        ids(&run(vec![rh(Some("nodejs:20:9030020231101:rhel9"))])),
        vec!["RHSA-2024:1688"]
    );
    assert!(run(vec![rh(Some("nodejs:18:9020020230531:rhel9"))]).is_empty());
    assert!(run(vec![rh(None)]).is_empty());
}

/// Epochs, as osv-scanner#2915 measured them (111 records instead of 10 without them): the
/// installed epoch is part of the version compared, a missing one is rpm's 0.
#[test]
fn red_hat_epochs_are_compared_never_dropped() {
    let rh = |v: &str| pkg("Red Hat:enterprise_linux:9::", "openssl", v, None);
    let ids = |v: &str| -> Vec<String> { run(vec![rh(v)]).iter().map(|f| f.id.to_string()).collect() };
    // One release below the fix, same epoch: affected, once (two streams, one advisory).
    assert_eq!(ids("1:3.0.1-40.el9_0"), vec!["RHSA-2022:6224"]);
    // At the fix, and a later build: not.
    assert!(ids("1:3.0.1-41.el9_0").is_empty());
    assert!(ids("1:3.0.7-27.el9").is_empty());
    // The same later build with its epoch lost is epoch 0, older than every fix: what a
    // cataloger that drops epochs would report (ours keeps it: tests/os_catalogers.rs).
    assert_eq!(ids("3.0.7-27.el9"), vec!["RHSA-2022:6224"]);
}

/// A signed kernel image (`linux-image-<release>`, source `linux-signed-*`) is judged by the
/// kernel's own source, which the records name, at the image's version; its unsigned sibling
/// and its modules already carry that source.
#[test]
fn signed_kernel_images_are_judged_by_the_kernels_own_source() {
    let ubuntu = "Ubuntu:22.04:LTS";
    let signed = |name: &str, v: &str| pkg(ubuntu, name, v, Some(("linux-signed-azure-6.8", v)));
    let found = run(vec![
        signed("linux-image-6.8.0-1020-azure", "6.8.0-1020.23~22.04.1"),
        signed("linux-image-6.8.0-1030-azure", "6.8.0-1030.35~22.04.1"),
        pkg(
            ubuntu,
            "linux-modules-6.8.0-1020-azure",
            "6.8.0-1020.23~22.04.1",
            Some(("linux-azure-6.8", "6.8.0-1020.23~22.04.1")),
        ),
        pkg(
            "Debian:12",
            "linux-image-6.1.0-3-amd64",
            "6.1.8-1",
            Some(("linux-signed-amd64", "6.1.8+1")),
        ),
        pkg(
            "Debian:12",
            "linux-image-6.1.0-5-amd64",
            "6.1.12-1",
            Some(("linux-signed-amd64", "6.1.12+1")),
        ),
    ]);
    let got: Vec<_> = found.iter().map(brief).collect();
    let fix = |s: &str| Some(s.to_string());
    assert_eq!(
        got,
        [
            (
                "DEBIAN-CVE-2023-0386".into(),
                "linux-image-6.1.0-3-amd64".into(),
                fix("6.1.11-1"),
                Severity::Unknown
            ),
            (
                "UBUNTU-CVE-2025-21675".into(),
                "linux-image-6.8.0-1020-azure".into(),
                fix("6.8.0-1030.35~22.04.1"),
                Severity::Medium
            ),
            (
                "UBUNTU-CVE-2025-21675".into(),
                "linux-modules-6.8.0-1020-azure".into(),
                fix("6.8.0-1030.35~22.04.1"),
                Severity::Medium
            ),
        ]
    );
}
