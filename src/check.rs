//! `stalewatch check URL…`: GETs each URL (an agent's `/readyz`, its `/metrics`) and fails
//! unless every one answers 200 and, with `--expect`, its body holds that text. What the Helm
//! chart's `helm test` pod runs — the stalewatch image itself, which has no shell nor curl.

use std::process::ExitCode;
use std::time::Duration;

/// Checks every URL in turn; prints one line each.
pub fn run(urls: &[String], expect: Option<&str>, timeout: Duration) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let mut ok = true;
    for url in urls {
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
