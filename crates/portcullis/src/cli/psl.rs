//! `portcullis psl`: the public suffix list that DMARC alignment, URIBL lookups and DMARC
//! report addresses use (`portcullis_filter::suffix`). A copy newer than the one built
//! into the binary is kept at `[auth] public_suffix_list`; `psl update` fetches or copies
//! one there and tells a running gateway, which also looks for changes every minute.

use crate::config::Config;
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use portcullis_filter::suffix;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The most a list download may be (the real list is about 300 KB).
const MAX_LIST_BYTES: usize = 8 << 20;

#[derive(Subcommand)]
pub enum PslCmd {
    /// Fetch the list (from `[auth] public_suffix_url`, or URL), check it, and install it.
    Update {
        /// An `https:` address instead of the configured one.
        #[arg(long, conflicts_with = "from")]
        url: Option<String>,
        /// Install a list file from here instead of fetching one.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Which list is in use, and the organizational domain of each DOMAIN.
    Show { domains: Vec<String> },
}

pub async fn psl(config: &Config, action: PslCmd) -> Result<ExitCode> {
    let file = config.auth.public_suffix_file(&config.data_dir);
    match action {
        PslCmd::Update { url, from } => {
            let (text, origin) = match from {
                Some(path) => (
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                    path.display().to_string(),
                ),
                None => {
                    let url = url.unwrap_or_else(|| config.auth.public_suffix_url.clone());
                    (download(config, &url).await?, url)
                }
            };
            let (_, rules) = suffix::parse(&text).map_err(|e| anyhow!("{origin}: {e}"))?;
            write_durably(&file, text.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "{rules} rules from {origin} installed in {}",
                file.display()
            );
            match portcullis_gateway::control::request(&config.data_dir, "reload-psl").await {
                Some(reply) if reply.starts_with("ok") => {
                    println!("the running gateway uses it now");
                }
                Some(reply) => bail!("the running gateway did not take it: {reply}"),
                None => println!("no gateway is running; it is read at start"),
            }
            Ok(ExitCode::SUCCESS)
        }
        PslCmd::Show { domains } => {
            if let Err(e) = suffix::use_file(&file) {
                eprintln!("portcullis: {e}; the list built in is used");
            }
            println!("list: {}", suffix::source());
            for d in domains {
                println!("{d}\t{}", suffix::organizational(&d));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn download(config: &Config, url: &str) -> Result<String> {
    let resolver = portcullis_queue::mx::build_resolver(
        &config.dns.nameservers,
        Duration::from_secs(config.dns.timeout_secs),
    )
    .map_err(|e| anyhow!("DNS resolver: {e}"))?;
    let tls = portcullis_gateway::tls::client_configs(config)?;
    let client = portcullis_queue::mta_sts::https_client(
        resolver,
        (*tls.verified()).clone(),
        Duration::from_secs(60),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let error =
        |e: &dyn std::error::Error| anyhow!("{url}: {}", portcullis_queue::mta_sts::error_chain(e));
    let mut response = client.get(url).send().await.map_err(|e| error(&e))?;
    if !response.status().is_success() {
        bail!("{url}: HTTP status {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error(&e))? {
        if body.len() + chunk.len() > MAX_LIST_BYTES {
            bail!("{url}: larger than {MAX_LIST_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| anyhow!("{url}: not UTF-8"))
}

/// Writes `bytes` to `path` in one piece: a temporary file beside it, fsynced, renamed
/// over it, and the directory fsynced.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
