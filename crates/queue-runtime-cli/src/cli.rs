//! The command line as clap reads it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate queue-runtime queues: dead letters, peek, send, stats, configuration checks.
///
/// Configured like the library: `--config FILE`, or `QUEUE_RUNTIME_CONFIG` and the
/// `QUEUE_RUNTIME_*` variables. Exit codes: 0 done, 1 failed, 2 wrong usage.
#[derive(Debug, Parser)]
#[command(name = "queue-runtime", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The configuration file (TOML); without it, QUEUE_RUNTIME_CONFIG and the QUEUE_RUNTIME_*
    /// variables.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Output for people (aligned tables) or for scripts (one JSON document on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// Log what the library does to stderr (never bodies or key material).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables and a summary line (colour on a terminal, off with NO_COLOR).
    Table,
    /// One JSON document on stdout, of a stable shape.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate the configuration, connect, check every declared queue and the key source;
    /// print one line per problem.
    Check,
    /// Read messages without taking them (opened when the keys allow, else shown as sealed).
    Peek(PeekArgs),
    /// Send a message (sealed per the queue's policy).
    Send(SendArgs),
    /// How many messages a queue and its dead-letter queue hold.
    Stats(QueueArg),
    /// The dead-letter queue: list, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Keyset documents: create, rotate (add, promote, retire, remove), list, and set up
    /// public-key mode (recipient and signing keys, the exchange of their public halves).
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    /// The keyset file to work on. Without it, the key source of the configuration's security
    /// section (a file, a Secrets Manager or Key Vault secret, wrapped by KMS or not).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// With the configuration: the keys of this queue (its own key source among the
    /// security.queues entries) instead of the default ones.
    #[arg(long, global = true, conflicts_with = "file")]
    pub(crate) queue: Option<String>,
    #[command(subcommand)]
    pub(crate) command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a keyset with one shared primary key (refuses to overwrite one).
    Generate(NewKeyArgs),
    /// Add a new shared key, active: every consumer learns it before it seals (step 1 of a
    /// rotation).
    Add(KeyIdArg),
    /// Make a key the one that seals (step 2).
    Promote(KeyIdArg),
    /// Stop sealing and opening with a key (step 3, once nothing sealed under it is left).
    Retire(KeyIdArg),
    /// Delete a key for good: a message sealed under it can never be opened again.
    Remove(RemoveArgs),
    /// The keys: id, state, kind, dates, and the public half of public keys. Never secrets.
    List,
    /// A consumer's recipient key pair (public-key mode); creates a consumer's keyset when
    /// there is none.
    Recipient(RecipientArgs),
    /// A producer's signing key (public-key mode); creates a producer's keyset when there is
    /// none.
    Signer(NewKeyArgs),
    /// Write the public halves (recipient and signing keys) to hand to the other side: no
    /// secret in it.
    ExportPublic(ExportArgs),
    /// Take the other side's public halves: recipient public keys on a producer, trusted
    /// senders on a consumer.
    ImportPublic(ImportArgs),
    /// Trust one sender by its base64 Ed25519 public key (a consumer's keyset).
    Trust(TrustArgs),
    /// A keyset wrapped by KMS: wrap it again under a new data key, from another KMS key with
    /// --kms-key (the keys inside do not change).
    Rewrap(RewrapArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
    /// The KMS key to wrap with from now on (id, ARN or alias); else the one that wraps it now.
    #[arg(long, value_name = "KMS_KEY")]
    pub(crate) kms_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct KeyIdArg {
    /// The key's id.
    #[arg(long)]
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct NewKeyArgs {
    /// The new key's id (letters, digits, `-`, `_`, `.`).
    #[arg(long)]
    pub(crate) id: String,
    /// When the keyset is new and the configuration wraps it with KMS: the KMS key that wraps
    /// it (id, ARN or alias).
    #[arg(long, value_name = "KMS_KEY")]
    pub(crate) kms_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RecipientArgs {
    #[command(flatten)]
    pub(crate) key: NewKeyArgs,
    /// The key encapsulation: x25519, or x-wing (post-quantum hybrid).
    #[arg(long, default_value = "x25519")]
    pub(crate) kem: String,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The key's id.
    #[arg(long)]
    pub(crate) id: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Where to write the export (`-` or nothing: stdout).
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The other side's export.
    #[arg(long, value_name = "PATH")]
    pub(crate) from: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// The sender's key id, as its signatures name it.
    #[arg(long)]
    pub(crate) id: String,
    /// Its Ed25519 public key, base64.
    #[arg(long, value_name = "BASE64")]
    pub(crate) public_key: String,
}

#[derive(Debug, Args)]
pub(crate) struct QueueArg {
    /// The queue's name, as the provider knows it (checked before any call).
    pub(crate) queue: String,
}

#[derive(Debug, Args)]
pub(crate) struct PeekArgs {
    /// The queue's name, as the provider knows it (checked before any call).
    pub(crate) queue: String,
    /// How many messages at most.
    #[arg(long, default_value_t = 10)]
    pub(crate) max: usize,
    /// Start at this sequence number.
    #[arg(long)]
    pub(crate) from: Option<u64>,
    /// Peek the dead-letter queue instead.
    #[arg(long)]
    pub(crate) dead_letter: bool,
    /// Show the bodies (opened when the keys allow).
    #[arg(long)]
    pub(crate) show_body: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The queue's name, as the provider knows it (checked before any call).
    pub(crate) queue: String,
    /// The body as text.
    #[arg(long, conflicts_with = "file")]
    pub(crate) body: Option<String>,
    /// The body from a file (`-` for stdin). Without --body or --file, stdin.
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// An application property, `key=value` (repeat for more).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
    /// The session (message group on SQS FIFO).
    #[arg(long)]
    pub(crate) session: Option<String>,
    /// The correlation id.
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
    /// The content type.
    #[arg(long)]
    pub(crate) content_type: Option<String>,
    /// Deliver after this long (`30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    pub(crate) delay: Option<Duration>,
    /// Deliver at this time (RFC 3339, `2026-11-24T08:00:00Z`).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) at: Option<std::time::SystemTime>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters: id, reason, description, delivery count, age, size, sealed or not.
    List(ListArgs),
    /// Send the selected dead letters back to their queue as new messages (re-sealed), then
    /// remove the dead-letter copies.
    Replay(SelectArgs),
    /// Remove the selected dead letters for good.
    Purge(SelectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The queue whose dead-letter queue to read.
    pub(crate) queue: String,
    /// How many dead letters at most.
    #[arg(long, default_value_t = 50)]
    pub(crate) max: usize,
    /// Show the bodies (opened when the keys allow).
    #[arg(long)]
    pub(crate) show_body: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The queue whose dead-letter queue to work on.
    pub(crate) queue: String,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Show what would be done, change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

/// Which dead letters: every condition given must hold.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only those with this dead-letter reason.
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// Only those enqueued longer ago than this (`1h`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) older_than: Option<Duration>,
    /// Only these message ids (repeat for more).
    #[arg(long = "id", value_name = "MESSAGE_ID")]
    pub(crate) ids: Vec<String>,
    /// At most this many.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}
