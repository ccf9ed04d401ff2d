//! The build date an AKS node image's version encodes: AKS names its Linux node images
//! `<image>-<YYYYMM>.<DD>.<N>` (`AKSUbuntu-2204gen2containerd-202511.12.0`,
//! `AKSAzureLinux-V3gen2-202511.12.0`), in the Node label
//! `kubernetes.azure.com/node-image-version`. Other versions (Windows' `20348.3207.250214`,
//! a hand-made image's) encode no date: `None`, never a guess. Pure: the label's text in.

use crate::time;

/// Seconds since the epoch of the day a node image version says it was built (00:00 UTC).
pub fn build_date(version: &str) -> Option<i64> {
    let (_, stamp) = version.trim().rsplit_once('-')?;
    let mut parts = stamp.split('.');
    let (month, day, build) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some()
        || !digits(month, 6)
        || !digits(day, 2)
        || build.is_empty()
        || !build.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let date = format!("{}-{}-{day}", &month[..4], &month[4..]);
    let secs = time::days_from_date(&date)? * 86_400;
    // A day the month does not have (`202502.30`) is no date.
    time::format_rfc3339(secs).starts_with(&date).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aks_linux_node_image_versions_are_dated_and_nothing_else_is() {
        // `date -u -d 2025-11-12 +%s` is 1762905600; `date -u -d 2024-02-29 +%s` 1709164800.
        assert_eq!(
            build_date("AKSUbuntu-2204gen2containerd-202511.12.0"),
            Some(1_762_905_600)
        );
        assert_eq!(
            build_date("AKSAzureLinux-V3gen2-202511.12.0"),
            Some(1_762_905_600)
        );
        assert_eq!(
            build_date("AKSUbuntu-2404gen2containerd-202402.29.1"),
            Some(1_709_164_800)
        );
        for undated in [
            "",
            "20348.3207.250214",
            "AKSUbuntu-2204gen2containerd-202502.30.0",
            "AKSUbuntu-2204gen2containerd-202513.01.0",
            "AKSUbuntu-2204gen2containerd-202511.12",
            "AKSUbuntu-2204gen2containerd-202511.12.0.1",
            "AKSUbuntu-2204gen2containerd-20251.12.0",
            "AKSUbuntu-2204gen2containerd-2025１1.12.0",
            "custom-image",
        ] {
            assert_eq!(build_date(undated), None, "{undated}");
        }
    }
}
