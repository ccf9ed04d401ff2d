//! `stalewatch mirror`'s flags into the mirror's configuration, checked as a whole.

use anyhow::bail;

use super::parse::ecosystems_or_all;
use super::MirrorArgs;

impl MirrorArgs {
    pub fn config(&self) -> anyhow::Result<crate::mirror::Config> {
        let upstream = |u: &str, what: &str| -> anyhow::Result<Option<String>> {
            match u {
                "off" => Ok(None),
                u if u.starts_with("http://") || u.starts_with("https://") => Ok(Some(u.to_string())),
                u => bail!("{what} {u:?}: an http:// or https:// URL, or off"),
            }
        };
        let Some(osv) = upstream(&self.upstream, "--upstream")? else {
            bail!("--upstream cannot be off");
        };
        Ok(crate::mirror::Config {
            data: self.data.clone(),
            upstream: osv,
            ecosystems: ecosystems_or_all(&self.ecosystems),
            kev_upstream: upstream(&self.kev_upstream, "--kev-upstream")?,
            epss_upstream: upstream(&self.epss_upstream, "--epss-upstream")?,
            ca_file: self.ca_file.clone(),
            interval: self.interval,
            listen: self.listen,
            once: self.once,
        })
    }
}
