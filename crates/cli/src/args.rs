//! Command-line grammar (clap). Values are parsed raw here and validated by
//! the domain, so the CLI and the REST API enforce the same rules.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Second-factor (OTP) authentication server and its admin CLI", long_about = None)]
pub struct Cli {
    /// Data directory (overrides [server] data_dir).
    #[arg(long, global = true, env = "TESSERA_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Configuration file (default: ./tessera.toml if present).
    #[arg(long, global = true, env = "TESSERA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `TESSERA_*` variables this invocation reads besides the settings
    /// (`--passphrase-env VAR`): not reported as unknown.
    pub fn env_read(&self) -> Vec<&str> {
        use crate::commands::backup::BackupCmd;
        use crate::commands::key::KeyCmd;
        use crate::commands::transfer::{ExportCmd, ImportCmd};
        let passphrase = match &self.command {
            Command::Backup(
                BackupCmd::Create { passphrase, .. }
                | BackupCmd::Verify { passphrase, .. }
                | BackupCmd::Restore { passphrase, .. },
            )
            | Command::Key(KeyCmd::Export { passphrase, .. })
            | Command::Export(ExportCmd::Config { passphrase, .. } | ExportCmd::Users { passphrase, .. }) => passphrase,
            Command::Import(ImportCmd::Config(a) | ImportCmd::Users(a)) => &a.passphrase,
            _ => return Vec::new(),
        };
        passphrase.passphrase_env.as_deref().into_iter().collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the master key file and an empty database.
    Init,
    /// Run the server (initialises the data directory on first start).
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
    /// What this node is and how it is doing (users, clients, realms, last scheduled backup).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Bring the database to this release's schema (what `serve` does at start; the Debian package runs it on
    /// upgrade). All pending migrations run in one transaction: a failure changes nothing.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage OTP tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Issue a fresh set of 10 backup codes for a user (the old set stops working).
    BackupCodes(UserRef),
    /// Run a full authentication decision locally and print it (state changes as for a real login).
    Check(CheckArgs),
    /// Manage web-console administrators (password + own TOTP, enrolled at first sign-in).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Manage API keys for the admin REST API.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
    /// Manage RADIUS clients (NAS, VPN gateways, …).
    #[command(subcommand)]
    Client(ClientCmd),
    /// Manage realms: where users' passwords are checked (local, LDAP/AD, Entra ID).
    #[command(subcommand)]
    Realm(RealmCmd),
    /// Manage local group membership (used by reply rules and policies).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Manage RADIUS reply attributes added to Access-Accept.
    #[command(subcommand)]
    Reply(ReplyCmd),
    /// Show or change the authentication policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read the audit log, or verify its hash chain.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Show configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Encrypted backups (age): create while serving, verify, restore.
    #[command(subcommand)]
    Backup(crate::commands::backup::BackupCmd),
    /// Export users (with their tokens; secrets only into an encrypted file).
    #[command(subcommand)]
    Export(crate::commands::transfer::ExportCmd),
    /// Import users exported by `tessera export users`.
    #[command(subcommand)]
    Import(crate::commands::transfer::ImportCmd),
    /// The master key: export it alone (encrypted), rotate it, show its status.
    #[command(subcommand)]
    Key(crate::commands::key::KeyCmd),
    /// Primary/replica replication: token, join, status, promote, demote, sync.
    #[command(subcommand)]
    Replica(crate::commands::replica::ReplicaCmd),
}

/// Where each listen address is set, for `serve --help`: the quick start
/// never said how to move off 8443/1812 (issue 15, item 9).
const SERVE_AFTER_HELP: &str = "\
Listen addresses, their variables and config keys (a flag wins over the variable, the variable
over the config file; variables take comma-separated lists, flags may be repeated):
  HTTPS: API, console, portal     default 127.0.0.1:8443
      --http-listen     TESSERA_HTTP_LISTEN     [http] listen
  RADIUS (UDP)                    default 127.0.0.1:1812
      --radius-listen   TESSERA_RADIUS_LISTEN   [radius] listen
  RADIUS accounting (UDP)         default off
      TESSERA_RADIUS_ACCOUNTING_LISTEN   [radius] accounting_listen
  RadSec (TCP)                    default off
      TESSERA_RADIUS_RADSEC_LISTEN       [radius] radsec_listen
  HTTPS, portal only              default off
      TESSERA_UI_PORTAL_LISTEN           [ui] portal_listen
Every setting and its variable: `tessera config default`; the effective ones: `tessera config show`.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address(es) for the API, console and portal, e.g. 0.0.0.0:8443
    /// (overrides [http] listen and TESSERA_HTTP_LISTEN).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', value_parser = clap::value_parser!(SocketAddr))]
    pub http_listen: Vec<SocketAddr>,
    /// RADIUS UDP address(es), e.g. 0.0.0.0:1812 (overrides [radius] listen
    /// and TESSERA_RADIUS_LISTEN).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', value_parser = clap::value_parser!(SocketAddr))]
    pub radius_listen: Vec<SocketAddr>,
}

impl ServeArgs {
    /// Puts the flags given over the loaded settings (file and environment).
    pub fn apply(&self, cfg: &mut tessera_server::config::Config) {
        let strings = |addrs: &[SocketAddr]| addrs.iter().map(SocketAddr::to_string).collect();
        if !self.http_listen.is_empty() {
            cfg.http.listen = strings(&self.http_listen);
        }
        if !self.radius_listen.is_empty() {
            cfg.radius.listen = strings(&self.radius_listen);
        }
    }
}

#[derive(Debug, Args)]
pub struct UserRef {
    /// Username.
    pub user: String,
    /// Realm (default realm when absent).
    #[arg(long)]
    pub realm: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct PasswordInput {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the password from the first line of a file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Add a web-console administrator; the password comes from stdin or a
    /// file, the TOTP is enrolled at the first sign-in.
    Add {
        name: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Forget the admin's TOTP (enrolled again at next sign-in) and unlock;
    /// with --password-stdin/--password-file also set a new password.
    Reset {
        name: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// List administrators.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an administrator.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user (unregistered until a token is confirmed).
    Add {
        #[command(flatten)]
        user: UserRef,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// List users.
    List {
        /// Case-sensitive pattern; `*` matches anything (quote it: 'jo*').
        #[arg(long)]
        search: Option<String>,
        /// unregistered, active, locked or disabled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        realm: Option<String>,
        /// At most this many users (1–10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show a user, their tokens and remaining backup codes.
    Show {
        #[command(flatten)]
        user: UserRef,
        #[arg(long)]
        json: bool,
    },
    /// Unlock a locked user.
    Unlock(UserRef),
    /// Remove the user's tokens, backup codes and lock state (unregistered again).
    Reset(UserRef),
    /// Refuse every login of the user.
    Disable(UserRef),
    /// Undo `disable`.
    Enable(UserRef),
    /// Delete the user and their tokens.
    Delete(UserRef),
    /// Set (or with --remove, delete) the user's local password.
    Passwd {
        #[command(flatten)]
        user: UserRef,
        #[command(flatten)]
        password: PasswordInput,
        /// Remove the local password.
        #[arg(long, conflicts_with_all = ["password_stdin", "password_file"])]
        remove: bool,
    },
}

#[derive(Debug, Args)]
pub struct TokenParams {
    /// totp or hotp.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// SHA1, SHA256 or SHA512.
    #[arg(long)]
    pub algorithm: Option<String>,
    /// 6 or 8.
    #[arg(long)]
    pub digits: Option<u8>,
    /// TOTP period in seconds: 30 or 60.
    #[arg(long)]
    pub period: Option<u32>,
    #[arg(long, default_value = "")]
    pub description: String,
}

/// Options of `token add-email` / `add-sms`.
#[derive(Debug, Args)]
pub struct OobTokenArgs {
    /// Length of the codes sent: 6 (default) or 8.
    #[arg(long)]
    pub digits: Option<u8>,
    /// Serial number (generated when absent).
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Generate a secret for a user and print it as text, otpauth URI and QR code.
    /// The token is pending until confirmed with `tessera token confirm`.
    Enroll {
        #[command(flatten)]
        user: UserRef,
        #[command(flatten)]
        params: TokenParams,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add a token with a known secret (hardware token, migration); active at once.
    Add {
        #[command(flatten)]
        user: UserRef,
        /// The secret in base32.
        #[arg(long, required_unless_present = "secret_hex")]
        secret: Option<String>,
        /// The secret in hex.
        #[arg(long, conflicts_with = "secret")]
        secret_hex: Option<String>,
        #[command(flatten)]
        params: TokenParams,
        /// HOTP: next counter value.
        #[arg(long, default_value_t = 0)]
        counter: u64,
        /// Serial number (generated when absent).
        #[arg(long)]
        serial: Option<String>,
        /// Require confirmation with a code before the token counts.
        #[arg(long)]
        pending: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add an email token: after the first factor, a code is sent to ADDRESS
    /// (where policy `oob_realms` / `oob_users` enables it). Active at once.
    AddEmail {
        #[command(flatten)]
        user: UserRef,
        /// The email address codes go to.
        address: String,
        #[command(flatten)]
        oob: OobTokenArgs,
    },
    /// Add an SMS token: after the first factor, a code is sent to PHONE
    /// (international: `+49 151 …`) through the `[sms]` gateway.
    AddSms {
        #[command(flatten)]
        user: UserRef,
        /// The phone number codes go to.
        phone: String,
        #[command(flatten)]
        oob: OobTokenArgs,
    },
    /// Confirm a user's pending token with a current code.
    Confirm {
        #[command(flatten)]
        user: UserRef,
        code: String,
    },
    /// List a user's tokens, or every token when no user is given.
    List {
        user: Option<String>,
        #[arg(long)]
        realm: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one token.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Reset learned drift; with two consecutive codes, resynchronise (±100 steps/counters).
    Resync { serial: String, first: Option<String>, second: Option<String> },
    /// Delete a token.
    Delete { serial: String },
    /// Import hardware token seeds into the inventory (unassigned; Azure CSV
    /// rows with a UPN are assigned to that user, created if missing).
    Import(ImportArgs),
    /// List the hardware token inventory.
    Inventory {
        /// Only seeds lent to a user.
        #[arg(long, conflicts_with = "unassigned")]
        assigned: bool,
        /// Only free seeds.
        #[arg(long)]
        unassigned: bool,
        #[arg(long)]
        manufacturer: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long)]
        json: bool,
    },
    /// Give a user a token made from an inventory seed (active at once).
    Assign {
        serial: String,
        #[command(flatten)]
        user: UserRef,
    },
    /// Take the token made from an inventory seed away from its user; the
    /// seed is free again (with the counter it reached).
    Unassign { serial: String },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub user: String,
    /// `password+code`, or the code alone; `-` reads it from standard input.
    pub password: String,
    #[arg(long)]
    pub realm: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key; it is printed once.
    Create {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Change settings, e.g. `tessera policy set lockout_threshold=3 auto_unlock_seconds=0`.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Newest first.
    List {
        /// RFC 3339 time, a date, or an age such as 15m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// accept, reject, challenge, ok or error.
        #[arg(long)]
        result: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Check every node's hash chain (read-only; no master key needed): names
    /// each changed, deleted or reordered record and exits 1 if there is one.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// The effective configuration (file, then environment overrides).
    Show,
    /// The annotated default configuration file.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Allow a RADIUS client: its source address (or prefix) and shared secret.
    Add {
        name: String,
        /// Source address or prefix, e.g. 10.0.0.1 or 10.0.0.0/24.
        #[arg(long)]
        address: String,
        /// Read the shared secret from the first line of this file.
        #[arg(long, value_name = "FILE", required_unless_present = "secret_stdin")]
        secret_file: Option<PathBuf>,
        /// Read the shared secret from the first line of standard input.
        #[arg(long, conflicts_with = "secret_file")]
        secret_stdin: bool,
        /// require (default), auto (required once seen) or off (old gear).
        #[arg(long, default_value = "require")]
        message_authenticator: String,
        /// Realm of this client's users who do not write `user@realm`.
        #[arg(long)]
        default_realm: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
    /// Change a client's shared secret; with --keep-old-for the current one
    /// stays accepted beside the new one for a while (rotation with overlap).
    #[command(name = "set-secret")]
    SetSecret {
        name: String,
        /// Read the new shared secret from the first line of this file.
        #[arg(long, value_name = "FILE", required_unless_present = "secret_stdin")]
        secret_file: Option<PathBuf>,
        /// Read the new shared secret from the first line of standard input.
        #[arg(long, conflicts_with = "secret_file")]
        secret_stdin: bool,
        /// Keep accepting the current secret this long (e.g. 90s, 30m, 24h,
        /// 7d; at most 30d). 0 (the default): refused from now on.
        #[arg(long, value_name = "DURATION", default_value = "0")]
        keep_old_for: String,
    },
    /// Change a client's address, Message-Authenticator mode or default
    /// realm: only the fields given; the secret stays.
    Edit {
        name: String,
        /// Source address or prefix, e.g. 10.0.0.1 or 10.0.0.0/24.
        #[arg(long)]
        address: Option<String>,
        /// require, auto (required once seen) or off (old gear).
        #[arg(long)]
        message_authenticator: Option<String>,
        /// Realm of this client's users who do not write `user@realm`.
        #[arg(long, conflicts_with = "no_default_realm")]
        default_realm: Option<String>,
        /// Remove the client's default realm (the policy's default applies).
        #[arg(long)]
        no_default_realm: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Add a user to a group (created on first use).
    Add {
        group: String,
        user: String,
        #[arg(long)]
        realm: Option<String>,
    },
    /// Remove a user from a group.
    Remove {
        group: String,
        user: String,
        #[arg(long)]
        realm: Option<String>,
    },
    /// List groups and their members.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReplyCmd {
    /// Add reply attributes, e.g. `tessera reply add --group vpn-admins 'Fortinet-Group-Name=vpn-admins'`.
    Add {
        /// For this user (`name` or `name@realm`).
        #[arg(long, conflicts_with_all = ["group", "all"])]
        user: Option<String>,
        /// For members of this group.
        #[arg(long, conflicts_with = "all")]
        group: Option<String>,
        /// For every accepted user.
        #[arg(long)]
        all: bool,
        /// `Attribute-Name=value` (dictionary names, as in FreeRADIUS).
        #[arg(required = true, value_name = "ATTRIBUTE=VALUE")]
        attributes: Vec<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RealmCmd {
    /// Create or replace a realm from a TOML file (see README "Realms"):
    /// `tessera realm add corp --file corp.toml`.
    /// Secrets in the file (`bind_password`, `client_secret`, or
    /// `*_file` paths to them) are sealed under the master key.
    Add {
        name: String,
        /// The realm definition (`[[source]]` tables, `cache_ttl_seconds`,
        /// `auto_provision`); without it, a realm of local passwords only.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a realm's settings (secrets are never shown).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
    /// Check a realm's sources: servers reachable, TLS, service account,
    /// Entra tenant and app; with --user, also a password (read from stdin).
    Test {
        name: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Make every node drop its directory cache (sources, attributes, groups).
    FlushCache,
    /// The realm of users who name none (policy `default_realm`).
    Default {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The seed file.
    pub file: PathBuf,
    /// `azure` (Azure MFA OATH CSV: upn,serial number,secret key,time
    /// interval,manufacturer,model), `csv` (serial,secret[,type,algorithm,
    /// digits,period_or_counter]) or `pskc` (RFC 6030).
    #[arg(long)]
    pub format: String,
    /// PSKC encrypted with a pre-shared AES-128 key: a file holding it in hex.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_file")]
    pub psk_file: Option<PathBuf>,
    /// PSKC encrypted with a PBKDF2 passphrase: a file holding it.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Import the good rows even if some are bad (default: a bad row imports nothing).
    #[arg(long)]
    pub skip_bad: bool,
    /// Check and report, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Realm for users named by the file (Azure `upn`).
    #[arg(long)]
    pub realm: Option<String>,
}
