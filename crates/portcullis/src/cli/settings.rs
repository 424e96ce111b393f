//! `portcullis settings list|set|reset`: greylisting, DNSBL/URIBL and FCrDNS settings in
//! force. The configuration file gives their values; `set` keeps a key's new value in the
//! store over the file's (every node applies it within seconds, no restart), `reset`
//! gives it back to the file.

use super::Target;
use anyhow::Result;
use clap::Subcommand;
use portcullis_ops::check_settings::{Setting, split_name};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SettingsCmd {
    /// Every setting in force, with the key that sets it and who changed it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change SECTION.KEY (e.g. greylist.delay_secs) to VALUE: a number, true/false, a
    /// word, or a list in TOML's inline syntax (dnsbl.zones).
    Set { name: String, value: String },
    /// Give SECTION.KEY back to the configuration file.
    Reset { name: String },
}

fn print(title: &str, list: &[Setting]) {
    println!("{title}");
    for s in list {
        let from = match (&s.changed_by, s.changed_at) {
            (Some(by), Some(at)) => format!("   (changed by {by} at {at})"),
            _ => String::new(),
        };
        println!("  {}.{} = {}{from}", s.section, s.name, s.value);
    }
}

pub async fn settings(target: &Target, cmd: SettingsCmd) -> Result<ExitCode> {
    let backend = target.backend().await?;
    match cmd {
        SettingsCmd::List { json } => {
            let s = backend.check_settings().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            match &s.file {
                Some(f) => println!("from {f}, with the store's changes"),
                None => println!("from the built-in defaults, with the store's changes"),
            }
            print("[greylist]", &s.greylist);
            print("[dnsbl]", &s.dnsbl);
            println!("  dnsbl.zones = {}", s.zones_toml);
            println!("  dnsbl.uribl = {}", s.uribl_toml);
            print("[fcrdns]", &s.fcrdns);
            for o in s
                .changed
                .iter()
                .filter(|o| o.section == "dnsbl" && (o.key == "zones" || o.key == "uribl"))
            {
                println!(
                    "  (dnsbl.{} changed by {} at {})",
                    o.key, o.changed_by, o.changed_at
                );
            }
        }
        SettingsCmd::Set { name, value } => {
            let (section, key) = split_name(&name)?;
            backend.set_check_setting(section, key, &value).await?;
            println!("{section}.{key} changed; a running gateway applies it within seconds");
        }
        SettingsCmd::Reset { name } => {
            let (section, key) = split_name(&name)?;
            backend.reset_check_setting(section, key).await?;
            println!("{section}.{key} is the configuration file's again");
        }
    }
    Ok(ExitCode::SUCCESS)
}
