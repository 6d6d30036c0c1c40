//! Keyset files from the command line: generate one, run the three steps of a rotation, and
//! set up public-key mode (a consumer's recipient key, a producer's signing key, the exchange of
//! their public halves).
//!
//! ```text
//! # Shared key (version 1)
//! cargo run -p queue-keys --example keys -- generate --id orders-2026-11 --out keys.json
//! cargo run -p queue-keys --example keys -- add      --file keys.json --id orders-2026-12
//!
//! # Public key (version 2): the consumer makes its recipient key pair...
//! cargo run -p queue-keys --example keys -- recipient --file consumer.json --id orders-r1 [--kem x-wing]
//! # ... the producer its signing key ...
//! cargo run -p queue-keys --example keys -- signer    --file producer.json --id webhook-1
//! # ... each exports its public half and the other imports it (recipient public key on the
//! # producer's side, trusted sender on the consumer's). Exports hold no secret.
//! cargo run -p queue-keys --example keys -- export-public --file consumer.json --out orders-public.json
//! cargo run -p queue-keys --example keys -- import-public --file producer.json --from orders-public.json
//! cargo run -p queue-keys --example keys -- export-public --file producer.json --out webhook-public.json
//! cargo run -p queue-keys --example keys -- import-public --file consumer.json --from webhook-public.json
//! # or one trusted sender by its base64 public key:
//! cargo run -p queue-keys --example keys -- trust     --file consumer.json --id webhook-2 --public-key BASE64
//!
//! # Rotation, for every kind of key, by id (see docs/operations.md)
//! cargo run -p queue-keys --example keys -- promote  --file keys.json --id orders-2026-12
//! cargo run -p queue-keys --example keys -- retire   --file keys.json --id orders-2026-11
//! cargo run -p queue-keys --example keys -- remove   --file keys.json --id orders-2026-11
//! cargo run -p queue-keys --example keys -- list     --file keys.json
//! ```
//!
//! `recipient` on a new file makes a consumer's document and `signer` a producer's; a
//! producer's document refuses a recipient key. Prints ids, states, kinds and dates, and the
//! public keys' base64, never private key material. See docs/operations.md for when to run
//! each step.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::KeyId;
use queue_crypto::public::Kem;
use queue_keys::{KeysetDocument, PublicKeyKind, Role, generate_keyset_file};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keys: {error}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: keys generate --id ID --out FILE \
    | add|promote|retire|remove --file FILE --id ID \
    | recipient --file FILE --id ID [--kem x25519|x-wing] \
    | signer --file FILE --id ID \
    | export-public --file FILE --out FILE \
    | import-public --file FILE --from FILE \
    | trust --file FILE --id ID --public-key BASE64 \
    | list --file FILE";

fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let command = args.first().map(String::as_str).unwrap_or("help");
    let optional = |name: &str| -> Option<String> {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    let flag = |name: &str| -> Result<String, String> {
        optional(name).ok_or_else(|| format!("{command}: missing {name} <value>"))
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
        "recipient" | "signer" => {
            let path = flag("--file")?;
            let id = KeyId::new(flag("--id")?)?;
            let role = if command == "recipient" {
                Role::Consumer
            } else {
                Role::Producer
            };
            let mut document = read_or_new(&path, role)?;
            if command == "recipient" {
                let kem = match optional("--kem") {
                    None => Kem::default(),
                    Some(name) => Kem::from_name(&name)
                        .ok_or_else(|| format!("--kem {name}: expected x25519 or x-wing"))?,
                };
                document.generate_recipient_key(id.clone(), kem)?;
            } else {
                document.generate_signing_key(id.clone())?;
            }
            document.write_file(&path)?;
            println!(
                "{command} {id}: generated in {path}; export-public hands out its public half"
            );
        }
        "export-public" => {
            let export = KeysetDocument::read_file(flag("--file")?)?.export_public()?;
            let out = flag("--out")?;
            export.write_file(&out)?;
            println!("wrote the public halves to {out} (no secret in it)");
        }
        "import-public" => {
            let path = flag("--file")?;
            let mut document = KeysetDocument::read_file(&path)?;
            let changed = document.import_public(&KeysetDocument::read_file(flag("--from")?)?)?;
            document.write_file(&path)?;
            let ids: Vec<&str> = changed.iter().map(KeyId::as_str).collect();
            println!("imported into {path}: {}", ids.join(", "));
        }
        "trust" => {
            let path = flag("--file")?;
            let id = KeyId::new(flag("--id")?)?;
            let bytes = STANDARD
                .decode(flag("--public-key")?.trim())
                .map_err(|_| "--public-key: not valid base64")?;
            let mut document = KeysetDocument::read_file(&path)?;
            document.add_public_key(PublicKeyKind::TrustedSender, id.clone(), None, &bytes)?;
            document.write_file(&path)?;
            println!("trust {id}: added to {path}");
        }
        "list" => {}
        _ => {
            println!("{USAGE}");
            return Ok(());
        }
    }
    if !matches!(command, "generate" | "export-public") {
        list(&KeysetDocument::read_file(flag("--file")?)?)?;
    }
    Ok(())
}

/// The document at `path`, or a new one for `role` when there is no file yet.
fn read_or_new(path: &str, role: Role) -> Result<KeysetDocument, Box<dyn std::error::Error>> {
    if Path::new(path).try_exists()? {
        Ok(KeysetDocument::read_file(path)?)
    } else {
        Ok(KeysetDocument::empty(Some(role)))
    }
}

fn list(document: &KeysetDocument) -> Result<(), Box<dyn std::error::Error>> {
    let time = |at: Option<std::time::SystemTime>| {
        at.map(|at| humantime::format_rfc3339_seconds(at).to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    if let Some(role) = document.role() {
        println!("role: {}", role.as_str());
    }
    for key in document.keys() {
        println!(
            "{:<24} {:<8} {:<22} created {:<21} not_after {}",
            key.id().as_str(),
            key.state().as_str(),
            "shared",
            time(key.created()),
            time(key.not_after())
        );
    }
    for entry in document.public_keys() {
        let kind = match entry.kem() {
            Some(kem) => format!("{} {}", entry.kind().list_name(), kem.as_str()),
            None => entry.kind().list_name().to_owned(),
        };
        // Public keys are not secret: printed so they can be handed out (X-Wing's are long).
        let public = STANDARD.encode(entry.public_bytes()?);
        println!(
            "{:<24} {:<8} {:<22} created {:<21} not_after {:<21} public {}",
            entry.id().as_str(),
            entry.state().as_str(),
            kind,
            time(entry.created()),
            time(entry.not_after()),
            public
        );
    }
    Ok(())
}
