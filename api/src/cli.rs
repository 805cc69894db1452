//! The `consentry` command line: `serve` (default), `migrate`, `schema`, `token`, `msp`.
//! This module is the terminal's presentation layer, so it alone prints.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::{
    app::Application,
    app::shutdown_signal,
    auth::{self, CallerClaims, OneOrMany},
    config::{CallerAuthSettings, Settings},
    db, domain, graphql, telemetry,
};

/// Consentry: Microsoft Graph authorisation for an MSP's clients, as a GraphQL API.
#[derive(Debug, Parser)]
#[command(name = "consentry", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the API server (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Only list applied and pending migrations.
        #[arg(long)]
        status: bool,
    },
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    Schema,
    /// Print a caller token signed with the HS256 secret (registering the MSP if it is new).
    Token(TokenArgs),
    /// Register, list, disable and enable MSP tenants.
    #[command(subcommand)]
    Msp(MspCommand),
    /// Serve with the built-in Microsoft simulator and sample clients (SQLite, nothing to install).
    Demo(crate::demo::DemoArgs),
    /// Re-encrypt every stored refresh token under the first key of CONSENTRY_TOKEN_KEYS, so
    /// that older keys can then be removed.
    RotateKeys,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The MSP tenant the token acts for (its `msp` claim).
    #[arg(long)]
    pub msp: String,
    /// A role to grant; repeat for several.
    #[arg(long = "role", required = true, value_enum)]
    pub roles: Vec<RoleArg>,
    /// Who the token names (its `sub` claim).
    #[arg(long, default_value = "consentry-cli")]
    pub sub: String,
    /// How long the token lasts: e.g. 30m, 12h (at most CONSENTRY_AUTH_MAX_TOKEN_LIFETIME,
    /// 24h unless set otherwise: the server refuses longer-lived tokens).
    #[arg(long, default_value = "12h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Display name for the MSP if the token registers it.
    #[arg(long)]
    pub msp_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MspCommand {
    /// Register an MSP tenant so tokens naming it are accepted.
    Add {
        /// The id callers' tokens carry in their `msp` claim.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the registered MSP tenants.
    List,
    /// Disable an MSP tenant: its tokens are refused at once (HTTP, and every new operation on
    /// an open WebSocket), and every instance closes its open WebSockets with 4403 within
    /// CONSENTRY_RIGHTS_RECHECK_INTERVAL.
    Disable {
        /// The MSP tenant's id.
        id: String,
    },
    /// Enable a disabled MSP tenant again.
    Enable {
        /// The MSP tenant's id.
        id: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Admin,
    Technician,
    Viewer,
    Support,
}

impl From<RoleArg> for auth::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => auth::Role::Admin,
            RoleArg::Technician => auth::Role::Technician,
            RoleArg::Viewer => auth::Role::Viewer,
            RoleArg::Support => auth::Role::Support,
        }
    }
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?}: expected a number with s, m, h or d"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(format!("{raw:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 || seconds > 30 * 86_400 {
        return Err(format!("{raw:?}: must be between 1s and 30d"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Entry point of the `consentry` binary.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with the command line given (the first item is the program name), for binaries
/// that embed Consentry's command line, such as the benchmark tool.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let serving = matches!(cli.command, None | Some(Command::Serve | Command::Demo(_)));
    telemetry::init(
        cli.settings.log_format,
        if serving {
            "info,sqlx=warn,sea_orm_migration=warn"
        } else {
            "warn"
        },
    );
    if serving {
        crate::app::raise_open_file_limit();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings each command reads (by option id), for its `--help`; `None`: all of them.
/// The others still parse, from flags or the environment (one environment serves every
/// command), but a command's help offers only what it uses: `demo` replaces the database and
/// Microsoft settings with its own, `token` needs the database and how tokens are signed.
fn settings_used(command: &str) -> Option<&'static [&'static str]> {
    const DATABASE: [&str; 3] = ["database_url", "db_max_connections", "log_format"];
    Some(match command {
        "serve" => return None,
        "schema" => &[],
        "migrate" | "msp" | "add" | "list" | "disable" | "enable" => &DATABASE,
        "token" => &[
            "database_url",
            "db_max_connections",
            "log_format",
            "auth_hs256_secret",
            "auth_jwks_url",
            "auth_issuer",
            "auth_audience",
            "auth_max_token_lifetime",
            "support_msp",
        ],
        "rotate-keys" => &[
            "database_url",
            "db_max_connections",
            "log_format",
            "token_keys",
            "kms_vault_addr",
            "kms_vault_token",
            "kms_vault_key",
            "kms_vault_mount",
            "ms_client_secret",
        ],
        // Everything but the database (the demo has its own) and Microsoft (the simulator).
        "demo" => &[
            "listen",
            "public_url",
            "frontend_url",
            "cors_origins",
            "shutdown_timeout",
            "log_format",
            "reverify_interval",
            "sweep_interval",
            "keepalive_interval",
            "callback_lease",
            "auth_hs256_secret",
            "auth_max_token_lifetime",
            "msp_mutations_per_minute",
            "msp_queries_per_minute",
            "ws_connections_per_caller",
            "ws_messages_per_minute",
            "query_timeout",
            "max_response_bytes",
            "answer_cache_bytes",
            "token_keys",
        ],
        _ => return None,
    })
}

/// The command line, each subcommand's help showing only the settings it uses.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    let command = Cli::command();
    let settings: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    hide_unused(command, &settings)
}

/// Gives each subcommand its own hidden copy of every setting it does not use: clap then
/// propagates only the others into it (a subcommand's own argument wins), and values given
/// anyway still reach the settings (the copies stay global).
fn hide_unused(mut command: clap::Command, settings: &[clap::Arg]) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(&name, |mut sub| {
            if let Some(used) = settings_used(&name) {
                for setting in settings {
                    if !used.contains(&setting.get_id().as_str()) {
                        sub = sub.arg(setting.clone().hide(true));
                    }
                }
            }
            hide_unused(sub, settings)
        });
    }
    command
}

/// Runs one parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until(shutdown_signal()).await?;
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Migrate { status } => {
            settings.validate()?;
            let db = db::connect(&settings).await?;
            if !status {
                db::migrate(&db, &settings.database_label()).await?;
            }
            let (applied, pending) = db::migration_status(&db).await?;
            for name in &applied {
                println!("applied  {name}");
            }
            for name in &pending {
                println!("pending  {name}");
            }
            eprintln!(
                "{}: {} applied, {} pending",
                settings.database_label(),
                applied.len(),
                pending.len()
            );
            Ok(())
        }
        Command::Token(args) => token(settings, args).await,
        Command::Demo(args) => crate::demo::run(settings, args).await,
        Command::Msp(MspCommand::Add { id, name }) => {
            settings.validate()?;
            let db = db::connect(&settings).await?;
            db::migrate(&db, &settings.database_label()).await?;
            let (msp, created) = domain::msp::ensure(&db, &id, name.as_deref())
                .await
                .map_err(user_error)?;
            if created {
                eprintln!("registered MSP tenant {:?} ({})", msp.id, msp.name);
            } else {
                eprintln!(
                    "MSP tenant {:?} ({}) was already registered",
                    msp.id, msp.name
                );
            }
            Ok(())
        }
        Command::RotateKeys => {
            settings.validate()?;
            let db = db::connect(&settings).await?;
            db::migrate(&db, &settings.database_label()).await?;
            // With a KMS: a new data key, every data key rewrapped under the transit key's
            // newest version, then everything re-encrypted under the new data key.
            let kms = crate::kms::VaultTransit::from_settings(&settings)?;
            if let Some(kms) = &kms {
                let created = domain::data_keys::create(&db, kms)
                    .await
                    .map_err(user_error)?;
                let rewrapped = domain::data_keys::rewrap(&db, kms)
                    .await
                    .map_err(user_error)?;
                eprintln!(
                    "made data key {created:?} and rewrapped {rewrapped} data key(s) with {}",
                    kms.label()
                );
            }
            let Some(keys) = crate::app::key_ring(&settings, &db).await? else {
                anyhow::bail!(
                    "set CONSENTRY_TOKEN_KEYS: the new key first, then every key still in use (`new:…,old:…`), \
                     or CONSENTRY_KMS_VAULT_ADDR and its token"
                );
            };
            let (rotated, current) = domain::delegated_consents::rotate_keys(&db, &keys)
                .await
                .map_err(user_error)?;
            let flow_keys = domain::crypto::FlowKeys::new(
                Some(keys.clone()),
                settings.ms_client_secret.as_ref(),
            );
            let links = domain::flows::store::rotate_keys(&db, &flow_keys)
                .await
                .map_err(user_error)?;
            eprintln!(
                "re-encrypted {rotated} refresh token(s) under key {:?}; {current} already used it. \
                 Re-encrypted the sign-in secrets of {} pending link(s); {} already used it{}. \
                 Keys other than {:?} can be removed from CONSENTRY_TOKEN_KEYS once every instance runs with the new list.",
                keys.current(),
                links.rotated,
                links.current,
                if links.unreadable > 0 {
                    format!(
                        "; {} could not be read with these keys (those links end with \"send a new link\")",
                        links.unreadable
                    )
                } else {
                    String::new()
                },
                keys.current()
            );
            if kms.is_some() {
                let retired = domain::data_keys::retire_unused(&db, keys.current())
                    .await
                    .map_err(user_error)?;
                eprintln!("retired {retired} data key(s) that nothing uses any more");
            }
            Ok(())
        }
        Command::Msp(MspCommand::Disable { id }) => set_disabled(settings, &id, true).await,
        Command::Msp(MspCommand::Enable { id }) => set_disabled(settings, &id, false).await,
        Command::Msp(MspCommand::List) => {
            settings.validate()?;
            let db = db::connect(&settings).await?;
            db::migrate(&db, &settings.database_label()).await?;
            for msp in domain::msp::list(&db).await? {
                let state = if msp.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}", msp.id, state, msp.name);
            }
            Ok(())
        }
    }
}

fn user_error(error: domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// `consentry msp disable` / `enable`.
async fn set_disabled(settings: Settings, id: &str, disabled: bool) -> anyhow::Result<()> {
    settings.validate()?;
    let db = db::connect(&settings).await?;
    db::migrate(&db, &settings.database_label()).await?;
    let msp = domain::msp::set_disabled(&db, id, disabled)
        .await
        .map_err(user_error)?;
    if disabled {
        eprintln!(
            "disabled MSP tenant {:?} ({}): its tokens are refused now, and its open WebSocket \
             connections close within {} on every instance",
            msp.id,
            msp.name,
            auth::duration_text(settings.rights_recheck_interval)
        );
    } else {
        eprintln!("enabled MSP tenant {:?} ({})", msp.id, msp.name);
    }
    Ok(())
}

/// `consentry token`: registers the MSP if needed and prints a signed token on stdout.
async fn token(settings: Settings, args: TokenArgs) -> anyhow::Result<()> {
    settings.validate()?;
    // Refused before anything is registered: the server would refuse the token anyway.
    if args.ttl > settings.auth_max_token_lifetime {
        bail!(
            "--ttl {} is longer than the {} the server accepts (CONSENTRY_AUTH_MAX_TOKEN_LIFETIME): \
             ask for at most {}, or raise the setting on every instance first",
            auth::duration_text(args.ttl),
            auth::duration_text(settings.auth_max_token_lifetime),
            auth::duration_text(settings.auth_max_token_lifetime),
        );
    }
    let CallerAuthSettings::Hs256 {
        issuer, audience, ..
    } = settings.caller_auth()?
    else {
        bail!(
            "`consentry token` signs with the HS256 secret, but CONSENTRY_AUTH_JWKS_URL is set: \
             callers get their tokens from your identity provider"
        );
    };
    let secret = auth::resolve_hs256_secret(&settings)?;
    let db = db::connect(&settings).await?;
    db::migrate(&db, &settings.database_label()).await?;
    let (msp, created) = domain::msp::ensure(&db, &args.msp, args.msp_name.as_deref())
        .await
        .map_err(user_error)?;
    if created {
        eprintln!("registered MSP tenant {:?}", msp.id);
    }
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(args.ttl.as_secs()).context("ttl too long")?;
    let mut roles: Vec<auth::Role> = args.roles.into_iter().map(Into::into).collect();
    roles.sort();
    roles.dedup();
    let claims = CallerClaims {
        sub: args.sub,
        msp: Some(msp.id),
        roles: OneOrMany::Many(roles.iter().map(|r| r.as_str().to_owned()).collect()),
        iss: issuer,
        aud: OneOrMany::One(audience),
        exp: now + ttl,
        iat: Some(now),
        nbf: None,
    };
    println!("{}", auth::mint_hs256(&secret, &claims)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_units_and_bounds() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "0", "h", "12w", "31d", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn help(args: &[&str]) -> String {
        let mut line = vec!["consentry"];
        line.extend_from_slice(args);
        line.push("--help");
        match command().try_get_matches_from(line) {
            Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => error.to_string(),
            other => panic!("no help for {args:?}: {other:?}"),
        }
    }

    /// Issue 19: the settings are grouped, and each command offers only those it uses — the
    /// demo none of the database or Microsoft settings it replaces.
    #[test]
    fn each_commands_help_offers_only_the_settings_it_uses() {
        let serve = help(&["serve"]);
        for shown in [
            "Microsoft:",
            "--ms-client-id",
            "Database:",
            "--database-url",
            "Limits:",
        ] {
            assert!(serve.contains(shown), "serve lacks {shown}");
        }
        let demo = help(&["demo"]);
        for hidden in [
            "--ms-client-id",
            "--ms-authority-url",
            "--database-url",
            "--kms-vault-addr",
        ] {
            assert!(!demo.contains(hidden), "demo offers {hidden}");
        }
        for shown in ["--demo-database-url", "--listen", "--simulator-listen"] {
            assert!(demo.contains(shown), "demo lacks {shown}");
        }
        let migrate = help(&["migrate"]);
        assert!(migrate.contains("--database-url") && !migrate.contains("--listen"));
        assert!(!help(&["msp", "add"]).contains("--ms-client-secret"));
        assert!(help(&["token"]).contains("--auth-hs256-secret"));
        assert!(!help(&["schema"]).contains("--database-url"));
    }

    #[test]
    fn a_hidden_setting_still_parses() {
        let matches = command()
            .try_get_matches_from([
                "consentry",
                "migrate",
                "--ms-client-id",
                "app",
                "--database-url",
                "sqlite::memory:",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.settings.ms_client_id.as_deref(), Some("app"));
        let matches = command()
            .try_get_matches_from(["consentry", "--listen", ":9000", "serve"])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.settings.listen.port(), 9000);
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let cli = Cli::try_parse_from([
            "consentry",
            "token",
            "--msp",
            "acme",
            "--role",
            "admin",
            "--role",
            "support",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Token(ref t)) if t.roles.len() == 2));
        assert!(
            Cli::try_parse_from(["consentry", "token", "--msp", "acme"]).is_err(),
            "a role is required"
        );
        let cli = Cli::try_parse_from(["consentry", "--listen", "0.0.0.0:9000", "serve"]).unwrap();
        assert_eq!(cli.settings.listen.port(), 9000);
        let cli =
            Cli::try_parse_from(["consentry", "migrate", "--database-url", "sqlite::memory:"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Migrate { status: false })
        ));
    }
}
