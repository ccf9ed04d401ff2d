//! The kernel a node runs, among the kernel packages it has installed: a pod shares the
//! host's kernel, and a fixed kernel installed but not booted is still the vulnerable one.
//! Debian and Ubuntu install one `linux-image-<release>` per kernel (`6.1.0-28-amd64`,
//! `6.8.0-1021-azure`; `linux-image-unsigned-<release>` too), Azure Linux and the other rpm
//! distributions one `kernel` per version-release (`6.6.57.1-3.azl3`). Pure: an inventory and
//! the running release (`/proc/sys/kernel/osrelease`) in.

use std::cmp::Ordering;

use crate::catalog::Inventory;
use crate::package::Package;

/// What is known of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningKernel {
    /// `uname -r`.
    pub release: String,
    /// The installed package that is the running kernel (name, version); `None`: unknown —
    /// no installed package matches the release (a kernel built or installed outside the
    /// package manager, as on this project's CI machine).
    pub package: Option<(String, String)>,
    /// A kernel package newer than the running one is installed: a reboot would run it.
    pub newer_installed: Option<(String, String)>,
}

/// Whether `p` is a kernel image package of some release (not a meta package such as
/// `linux-image-amd64`), and that release.
fn kernel_release(p: &Package) -> Option<String> {
    if p.path.contains("rpm") {
        return (p.name == "kernel" || p.name == "kernel-core")
            .then(|| without_epoch(&p.version).to_string());
    }
    let rest = p
        .name
        .strip_prefix("linux-image-unsigned-")
        .or_else(|| p.name.strip_prefix("linux-image-"))?;
    // A release starts with its version digits; meta packages name a flavour.
    rest.starts_with(|c: char| c.is_ascii_digit())
        .then(|| rest.to_string())
}

fn without_epoch(v: &str) -> &str {
    v.split_once(':').map_or(v, |(_, rest)| rest)
}

fn compare(p: &Package, a: &str, b: &str) -> Ordering {
    if p.path.contains("rpm") {
        crate::version::rpm::compare(a, b)
    } else {
        crate::version::dpkg::compare(a, b)
    }
}

/// The running kernel among `inv`'s packages.
pub fn running(inv: &Inventory, release: &str) -> RunningKernel {
    let release = release.trim();
    let kernels: Vec<(&Package, String)> = inv
        .packages
        .iter()
        .filter_map(|p| Some((p, kernel_release(p)?)))
        .collect();
    let running = kernels.iter().find(|(_, r)| r == release).map(|(p, _)| *p);
    let newer = running.and_then(|run| {
        kernels
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| compare(p, &p.version, &run.version) == Ordering::Greater)
            .max_by(|a, b| compare(a, &a.version, &b.version))
    });
    RunningKernel {
        release: release.to_string(),
        package: running.map(|p| (p.name.to_string(), p.version.to_string())),
        newer_installed: newer.map(|p| (p.name.to_string(), p.version.to_string())),
    }
}

/// Leaves out the kernel packages that do not run (when the running one is known), and the
/// packages that belong to them (`linux-modules-<release>`, `linux-modules-extra-<release>`
/// of Debian and Ubuntu): their findings are not the node's exposure, the running kernel's are.
pub fn only_the_running_kernel(inv: &mut Inventory, k: &RunningKernel) {
    let Some((name, version)) = &k.package else {
        return;
    };
    let idle: Vec<String> = inv
        .packages
        .iter()
        .filter_map(kernel_release)
        .filter(|r| *r != k.release && !r.is_empty())
        .map(|r| format!("-{r}"))
        .collect();
    let of_an_idle_kernel =
        |p: &Package| p.name.starts_with("linux-") && idle.iter().any(|r| p.name.ends_with(r.as_str()));
    std::sync::Arc::make_mut(&mut inv.packages).retain(|p| match kernel_release(p) {
        Some(_) => p.name == name.as_str() && p.version == version.as_str(),
        None => !of_an_idle_kernel(p),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, path: &str) -> Package {
        Package {
            ecosystem: "Ubuntu:22.04:LTS".into(),
            name: name.into(),
            version: version.into(),
            source_name: name.into(),
            source_version: version.into(),
            purl: String::new().into(),
            path: path.into(),
            arch: String::new().into(),
            layer: None,
            introduced_layer: None,
        }
    }

    #[test]
    fn the_running_kernel_is_the_image_package_of_its_release_and_a_newer_one_wants_a_reboot() {
        let dpkg = "var/lib/dpkg/status";
        let mut inv = Inventory {
            packages: vec![
                pkg("linux-image-6.8.0-1020-azure", "6.8.0-1020.23~22.04.1", dpkg),
                pkg("linux-image-6.8.0-1021-azure", "6.8.0-1021.25~22.04.1", dpkg),
                pkg("linux-image-azure", "6.8.0.1021.25~22.04.1", dpkg),
                pkg("linux-modules-6.8.0-1020-azure", "6.8.0-1020.23~22.04.1", dpkg),
                pkg("linux-modules-6.8.0-1021-azure", "6.8.0-1021.25~22.04.1", dpkg),
                pkg("openssh-server", "1:8.9p1-3ubuntu0.10", dpkg),
            ]
            .into(),
            ..Default::default()
        };
        let k = running(&inv, "6.8.0-1020-azure\n");
        assert_eq!(
            k.package,
            Some((
                "linux-image-6.8.0-1020-azure".into(),
                "6.8.0-1020.23~22.04.1".into()
            ))
        );
        // `dpkg --compare-versions 6.8.0-1021.25~22.04.1 gt 6.8.0-1020.23~22.04.1` holds.
        assert_eq!(
            k.newer_installed.as_ref().map(|n| n.0.as_str()),
            Some("linux-image-6.8.0-1021-azure")
        );
        only_the_running_kernel(&mut inv, &k);
        let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-image-6.8.0-1020-azure",
                "linux-image-azure",
                "linux-modules-6.8.0-1020-azure",
                "openssh-server"
            ]
        );
        // Booted into the newest: no reboot due.
        assert_eq!(running(&inv, "6.8.0-1020-azure").newer_installed, None);
    }

    #[test]
    fn an_unpackaged_kernel_is_unknown_and_nothing_is_left_out() {
        let mut inv = Inventory {
            packages: vec![pkg(
                "linux-image-6.1.0-28-amd64",
                "6.1.119-1",
                "var/lib/dpkg/status",
            )]
            .into(),
            ..Default::default()
        };
        let k = running(&inv, "6.18.44-fc-v1272");
        assert_eq!((k.package.clone(), k.newer_installed.clone()), (None, None));
        only_the_running_kernel(&mut inv, &k);
        assert_eq!(inv.packages.len(), 1);
    }

    #[test]
    fn azure_linux_kernels_are_rpm_version_releases() {
        let rpm = "var/lib/rpm/rpmdb.sqlite";
        let inv = Inventory {
            packages: vec![
                pkg("kernel", "6.6.57.1-3.azl3", rpm),
                pkg("kernel", "6.6.64.2-1.azl3", rpm),
            ]
            .into(),
            ..Default::default()
        };
        let k = running(&inv, "6.6.57.1-3.azl3");
        assert_eq!(k.package, Some(("kernel".into(), "6.6.57.1-3.azl3".into())));
        assert_eq!(
            k.newer_installed,
            Some(("kernel".into(), "6.6.64.2-1.azl3".into()))
        );
    }
}
