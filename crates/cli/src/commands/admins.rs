//! `tessera admin …`: web-console administrators (issue 7).

use tessera_core::admins::AdminAccounts;
use tessera_core::views::AdminView;
use tessera_server::node::Node;

use super::{actor, read_password};
use crate::UsageError;
use crate::args::AdminCmd;
use crate::output::{self, opt};

pub async fn run(node: &Node, cmd: AdminCmd) -> anyhow::Result<()> {
    let admins = AdminAccounts::new(node.ctx.clone());
    match cmd {
        AdminCmd::Add { name, password } => {
            let pw = read_password(&password)?
                .ok_or_else(|| UsageError("give --password-stdin or --password-file FILE".into()))?;
            admins.add(&actor(), &name, pw).await?;
            outln!("added admin `{name}`; the TOTP is enrolled at the first sign-in to /admin");
        }
        AdminCmd::Reset { name, password } => {
            let pw = read_password(&password)?;
            let with_password = pw.is_some();
            admins.reset(&actor(), &name, pw).await?;
            let extra = if with_password { ", set a new password" } else { "" };
            outln!("reset admin `{name}`: TOTP forgotten (enrolled again at next sign-in), unlocked{extra}");
        }
        AdminCmd::List { json } => {
            let now = node.ctx.clock.now();
            let list: Vec<AdminView> = admins.list().await?.iter().map(|a| AdminView::new(a, now)).collect();
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        if a.totp_enrolled { "yes" } else { "no" }.into(),
                        if a.locked { "locked".into() } else { a.failures.to_string() },
                        opt(&a.last_login_at),
                        opt(&a.last_login_from),
                    ]
                })
                .collect();
            output::table(&["NAME", "TOTP", "FAILURES", "LAST LOGIN", "FROM"], &rows);
        }
        AdminCmd::Delete { name } => {
            admins.delete(&actor(), &name).await?;
            outln!("deleted admin `{name}`");
        }
    }
    Ok(())
}
