//! Keyset files from the command line: generate one, and run the three steps of a rotation.
//!
//! ```text
//! cargo run -p queue-keys --example keys -- generate --id orders-2026-11 --out keys.json
//! cargo run -p queue-keys --example keys -- add      --file keys.json --id orders-2026-12
//! cargo run -p queue-keys --example keys -- promote  --file keys.json --id orders-2026-12
//! cargo run -p queue-keys --example keys -- retire   --file keys.json --id orders-2026-11
//! cargo run -p queue-keys --example keys -- remove   --file keys.json --id orders-2026-11
//! cargo run -p queue-keys --example keys -- list     --file keys.json
//! ```
//!
//! Prints ids, states and dates, never key material. See docs/operations.md for when to run
//! each step.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use queue_crypto::KeyId;
use queue_keys::{KeysetDocument, generate_keyset_file};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keys: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let command = args.first().map(String::as_str).unwrap_or("help");
    let flag = |name: &str| -> Result<String, String> {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
            .ok_or_else(|| format!("{command}: missing {name} <value>"))
    };
    match command {
        "generate" => {
            let path = flag("--out")?;
            generate_keyset_file(&path, KeyId::new(flag("--id")?)?)?;
            println!("wrote {path} with one primary key");
        }
        "add" | "promote" | "retire" | "remove" => {
            let path = flag("--file")?;
            let id = flag("--id")?;
            let mut document = KeysetDocument::read_file(&path)?;
            match command {
                "add" => document.add_generated(KeyId::new(&id)?)?,
                "promote" => document.promote(&id)?,
                "retire" => document.retire(&id)?,
                _ => document.remove(&id)?,
            }
            document.write_file(&path)?;
            println!("{command} {id}: done");
        }
        "list" => {}
        _ => {
            println!(
                "usage: keys generate --id ID --out FILE | add|promote|retire|remove --file FILE --id ID | list --file FILE"
            );
            return Ok(());
        }
    }
    if command != "generate" {
        let document = KeysetDocument::read_file(flag("--file")?)?;
        for key in document.keys() {
            let time = |at: Option<std::time::SystemTime>| {
                at.map(|at| humantime::format_rfc3339_seconds(at).to_string())
                    .unwrap_or_else(|| "-".to_owned())
            };
            println!(
                "{:<24} {:<8} created {:<21} not_after {}",
                key.id().as_str(),
                key.state().as_str(),
                time(key.created()),
                time(key.not_after())
            );
        }
    }
    Ok(())
}
