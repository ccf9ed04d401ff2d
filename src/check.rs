//! `stalewatch check URL…`: GETs each URL (an agent's `/readyz`, its `/metrics`) and fails
//! unless every one answers 200 and, with `--expect`, its body holds that text. What the Helm
//! chart's `helm test` pod runs — the stalewatch image itself, which has no shell nor curl.

use std::process::ExitCode;
use std::time::Duration;

/// Checks every URL in turn; prints one line each. `expect`: none, one for every URL, or one
/// per URL.
pub fn run(urls: &[String], expect: &[String], timeout: Duration) -> anyhow::Result<ExitCode> {
    if expect.len() > 1 && expect.len() != urls.len() {
        anyhow::bail!(
            "--expect given {} times for {} URLs: once for all, or once per URL",
            expect.len(),
            urls.len()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let mut ok = true;
    for (i, url) in urls.iter().enumerate() {
        let expect = expect.get(i).or(expect.first()).map(String::as_str);
        let result = rt.block_on(async {
            let resp = client.get(url).send().await?;
            let status = resp.status().as_u16();
            // At most 8 MiB of a body is looked at.
            let body = resp.bytes().await?;
            let body = String::from_utf8_lossy(&body[..body.len().min(8 << 20)]).into_owned();
            anyhow::Ok((status, body))
        });
        match result {
            Ok((200, body)) if expect.is_none_or(|e| body.contains(e)) => println!("ok {url}"),
            Ok((200, _)) => {
                ok = false;
                println!("FAILED {url}: 200 without {:?}", expect.unwrap_or_default());
            }
            Ok((status, _)) => {
                ok = false;
                println!("FAILED {url}: HTTP {status}");
            }
            Err(e) => {
                ok = false;
                println!("FAILED {url}: {e:#}");
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
