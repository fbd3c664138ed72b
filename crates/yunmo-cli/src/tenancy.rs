//! `yunmo tenants`, `yunmo keys` and `yunmo usage`: the tenancy part of the management API.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::{ServerArgs, check};

/// `yunmo tenants ...` (admin key).
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Tenant name.
        name: String,
        /// Limits as JSON, e.g. '{"requests_per_second": 50, "monthly_tokens": 1000000}'.
        #[arg(long)]
        limits: Option<String>,
    },
    /// List tenants.
    Ls,
    /// Delete a tenant: its keys stop working at once and it leaves every sharing list; its usage and
    /// audit records stay.
    Rm {
        /// Tenant name.
        name: String,
        /// Also delete the models it owns (without this, a tenant that owns models is refused).
        #[arg(long)]
        delete_models: bool,
    },
    /// Replace a tenant's limits.
    Limits {
        /// Tenant name.
        name: String,
        /// Limits as JSON ('{}' removes them all).
        limits: String,
    },
}

/// `yunmo keys ...` (admin key).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (it is stored only as a hash).
    Create {
        /// Owning tenant (default: the caller's).
        #[arg(long)]
        tenant: Option<String>,
        /// Label.
        #[arg(long, default_value = "")]
        name: String,
        /// Scope: admin, models:write, models:read, infer, metrics or keys:write (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Limit the key to this model (repeat for several).
        #[arg(long = "model")]
        models: Vec<String>,
        /// The key's own limits as JSON.
        #[arg(long)]
        limits: Option<String>,
        /// Refuse the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    /// List keys (ids, tenants, scopes; never secrets).
    Ls {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key; it is refused from the next request on.
    Revoke {
        /// Key id (the part after ym_).
        id: String,
    },
}

/// `yunmo usage`
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Start, inclusive: YYYY-MM-DD (UTC) or Unix seconds (default: start of this month).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive: YYYY-MM-DD (UTC) or Unix seconds (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Group rows by model, key or day.
    #[arg(long, default_value = "model")]
    pub group_by: String,
    /// Only this tenant (admins; others always see their own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

fn parse_json(text: &Option<String>, what: &str) -> anyhow::Result<Value> {
    match text {
        None => Ok(json!({})),
        Some(text) => serde_json::from_str(text).map_err(|error| anyhow::anyhow!("{what} is not valid JSON: {error}")),
    }
}

/// Runs a `tenants` subcommand.
pub async fn tenants(server: &ServerArgs, command: TenantsCommand) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    let body: Value = match command {
        TenantsCommand::Create { name, limits } => {
            let body = json!({ "name": name, "limits": parse_json(&limits, "--limits")? });
            check(client.post(format!("{url}/api/v1/tenants")).json(&body).send().await?).await?.json().await?
        }
        TenantsCommand::Ls => check(client.get(format!("{url}/api/v1/tenants")).send().await?).await?.json().await?,
        TenantsCommand::Rm { name, delete_models } => {
            let request = client.delete(format!("{url}/api/v1/tenants/{name}")).query(&[("delete_models", delete_models)]);
            check(request.send().await?).await?;
            eprintln!("Deleted tenant '{name}'.");
            return Ok(());
        }
        TenantsCommand::Limits { name, limits } => {
            let body = parse_json(&Some(limits), "limits")?;
            check(client.put(format!("{url}/api/v1/tenants/{name}/limits")).json(&body).send().await?).await?.json().await?
        }
    };
    outln!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// Runs a `keys` subcommand.
pub async fn keys(server: &ServerArgs, command: KeysCommand) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    match command {
        KeysCommand::Create { tenant, name, scopes, models, limits, expires_in_days } => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            let body = json!({
                "tenant": tenant, "name": name, "scopes": scopes,
                "models": (!models.is_empty()).then_some(models),
                "limits": parse_json(&limits, "--limits")?,
                "expires_at": expires_in_days.map(|days| now + days * 86_400),
            });
            let created: Value = check(client.post(format!("{url}/api/v1/keys")).json(&body).send().await?).await?.json().await?;
            eprintln!(
                "Key '{}' of tenant '{}' (shown once; store it now):",
                created["id"].as_str().unwrap_or(""),
                created["tenant"].as_str().unwrap_or("")
            );
            outln!("{}", created["key"].as_str().unwrap_or_default());
        }
        KeysCommand::Ls { tenant } => {
            let mut request = client.get(format!("{url}/api/v1/keys"));
            if let Some(tenant) = tenant {
                request = request.query(&[("tenant", tenant)]);
            }
            let keys: Vec<Value> = check(request.send().await?).await?.json().await?;
            outln!("{:<14} {:<16} {:<20} {:<34} {:<8}", "ID", "TENANT", "NAME", "SCOPES", "STATE");
            for key in keys {
                let scopes: Vec<&str> = key["scopes"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let state = if key["revoked_at"].is_null() { "active" } else { "revoked" };
                outln!(
                    "{:<14} {:<16} {:<20} {:<34} {:<8}",
                    key["id"].as_str().unwrap_or(""),
                    key["tenant"].as_str().unwrap_or(""),
                    key["name"].as_str().unwrap_or(""),
                    scopes.join(","),
                    state
                );
            }
        }
        KeysCommand::Revoke { id } => {
            check(client.delete(format!("{url}/api/v1/keys/{id}")).send().await?).await?;
            eprintln!("Revoked key '{id}'.");
        }
    }
    Ok(())
}

/// Runs `usage`: a report of usage and cost, as a table or CSV.
pub async fn usage(server: &ServerArgs, args: UsageArgs) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    let mut query = vec![("group_by", args.group_by.clone())];
    for (key, value) in [("from", &args.from), ("to", &args.to), ("tenant", &args.tenant)] {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    if args.csv {
        query.push(("format", "csv".into()));
        let text = check(client.get(format!("{url}/api/v1/usage")).query(&query).send().await?).await?.text().await?;
        out!("{text}");
        return Ok(());
    }
    let report: Value = check(client.get(format!("{url}/api/v1/usage")).query(&query).send().await?).await?.json().await?;
    outln!("Usage from {} to {}", report["from"].as_str().unwrap_or(""), report["to"].as_str().unwrap_or(""));
    outln!(
        "{:<16} {:<24} {:>10} {:>8} {:>12} {:>12} {:>12} {:>12}",
        "TENANT",
        args.group_by.to_uppercase(),
        "REQUESTS",
        "FAILED",
        "IN_TOKENS",
        "OUT_TOKENS",
        "COMPUTE_S",
        "COST"
    );
    for row in report["rows"].as_array().into_iter().flatten() {
        let n = |key: &str| row[key].as_u64().unwrap_or(0);
        outln!(
            "{:<16} {:<24} {:>10} {:>8} {:>12} {:>12} {:>12.3} {:>12.6}",
            row["tenant"].as_str().unwrap_or(""),
            row["group"].as_str().unwrap_or(""),
            n("requests"),
            n("failed"),
            n("input_tokens"),
            n("output_tokens"),
            n("compute_ms") as f64 / 1000.0,
            row["cost"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// `yunmo audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this tenant's entries (admins; others always see their own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Most entries, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// Runs `audit`: the newest management actions, as a table.
pub async fn audit(server: &ServerArgs, args: AuditArgs) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    let mut request = client.get(format!("{url}/api/v1/audit")).query(&[("limit", args.limit)]);
    if let Some(tenant) = &args.tenant {
        request = request.query(&[("tenant", tenant)]);
    }
    let entries: Vec<Value> = check(request.send().await?).await?.json().await?;
    outln!("{:<24} {:<14} {:<12} {:<8} {:<44} {:<22}", "AT", "KEY", "TENANT", "STATUS", "ACTION", "FROM");
    for entry in entries {
        outln!(
            "{:<24} {:<14} {:<12} {:<8} {:<44} {:<22}",
            entry["at"].as_str().unwrap_or(""),
            entry["key_id"].as_str().unwrap_or(""),
            entry["tenant"].as_str().unwrap_or(""),
            entry["outcome"].as_str().unwrap_or(""),
            entry["action"].as_str().unwrap_or(""),
            entry["remote"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Runs `whoami`: the key the server sees, its tenant, scopes and model allow-list.
pub async fn whoami(server: &ServerArgs) -> anyhow::Result<()> {
    let client = server.client()?;
    let url = &server.base_url()?;
    let body: Value = check(client.get(format!("{url}/api/v1/whoami")).send().await?).await?.json().await?;
    outln!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
