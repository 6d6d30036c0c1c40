//! KMS-wrapped keysets from the command line (the `aws-kms` feature; `aws-secrets-manager` for
//! `--secret`): create one, run the steps of a rotation, re-wrap under another KMS key. Each
//! command is a thin call of [`KmsKeys`]; the document lives in a file (`--file`) or a Secrets
//! Manager secret (`--secret`). AWS region and credentials come from the standard chain;
//! `--endpoint http://127.0.0.1:PORT` talks to a local server (moto) with test credentials.
//!
//! ```text
//! cargo run -p queue-keys --features aws-kms,aws-secrets-manager --example kms_keys -- \
//!     create  --kms-key arn:aws:kms:...:key/... --secret queue-runtime/orders-keys --id orders-2026-11
//! ... add     --secret queue-runtime/orders-keys --id orders-2026-12
//! ... promote --secret queue-runtime/orders-keys --id orders-2026-12
//! ... retire  --secret queue-runtime/orders-keys --id orders-2026-11
//! ... remove  --secret queue-runtime/orders-keys --id orders-2026-11
//! ... rewrap  --file keys.wrapped.json [--kms-key <another key>]
//! ... list    --file keys.wrapped.json
//! ```
//!
//! Prints ids, states and the wrapping key's ARN, never key material.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use queue_crypto::KeyId;
use queue_keys::{
    AwsSettings, DocumentStore, FileDocument, KeysetDocument, KmsKeys, KmsWrapper,
    SecretsManagerSecret,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kms_keys: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let command = args.first().cloned().unwrap_or_else(|| "help".to_owned());
    let optional = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    let flag =
        |name: &str| optional(name).ok_or_else(|| format!("{command}: missing {name} <value>"));
    if ![
        "create", "add", "promote", "retire", "remove", "rewrap", "list",
    ]
    .contains(&command.as_str())
    {
        println!(
            "usage: kms_keys create --kms-key KEY --id ID | add|promote|retire|remove --id ID | \
             rewrap [--kms-key KEY] | list; each with --file FILE or --secret SECRET_ID \
             [--endpoint URL]"
        );
        return Ok(());
    }
    let aws = match optional("--endpoint") {
        Some(endpoint) => AwsSettings::local_server(endpoint),
        None => AwsSettings::new(),
    };
    let wrapper = KmsWrapper::connect(&aws).await?;
    match (optional("--file"), optional("--secret")) {
        (Some(file), None) => {
            let keys = KmsKeys::new(wrapper, FileDocument::new(file));
            step(&command, &keys, &flag).await
        }
        (None, Some(secret)) => {
            let keys = KmsKeys::new(wrapper, SecretsManagerSecret::connect(&aws, secret).await?);
            step(&command, &keys, &flag).await
        }
        _ => Err(format!("{command}: give --file FILE or --secret SECRET_ID").into()),
    }
}

async fn step<S: DocumentStore>(
    command: &str,
    keys: &KmsKeys<S>,
    flag: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        "create" => {
            keys.create(&flag("--kms-key")?, KeyId::new(flag("--id")?)?)
                .await?;
        }
        "add" | "promote" | "retire" | "remove" => {
            let id = flag("--id")?;
            keys.edit(|document: &mut KeysetDocument| match command {
                "add" => document.add_generated(KeyId::new(&id)?),
                "promote" => document.promote(&id),
                "retire" => document.retire(&id),
                _ => document.remove(&id),
            })
            .await?;
        }
        "rewrap" => {
            let target = flag("--kms-key").ok();
            keys.rewrap(target.as_deref()).await?;
        }
        _ => {}
    }
    let wrapped = keys.read_wrapped().await?;
    println!(
        "{} wrapped by {}",
        keys.store().name(),
        wrapped.kms_key_id()
    );
    for key in keys.read_document().await?.keys() {
        println!("{:<24} {}", key.id().as_str(), key.state().as_str());
    }
    Ok(())
}
