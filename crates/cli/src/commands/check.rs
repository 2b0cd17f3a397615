//! `tessera check USER PASSWORD`: the full decision, run locally.

use tessera_core::auth::{Decision, ValidateRequest};
use tessera_server::node::Node;
use zeroize::Zeroizing;

use crate::Exit;
use crate::args::CheckArgs;

pub async fn run(node: &Node, a: CheckArgs) -> anyhow::Result<()> {
    let password = if a.password == "-" {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut s)?;
        Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_string())
    } else {
        Zeroizing::new(a.password)
    };
    node.load_directory().await?;
    let v = node
        .auth
        .validate(ValidateRequest {
            username: a.user,
            realm: a.realm,
            password,
            state: None,
            address: None,
            client: Some("cli".into()),
            ..Default::default()
        })
        .await?;
    match v.decision {
        Decision::Accept => {
            outln!("accept ({})", v.reason);
            Ok(())
        }
        Decision::Reject => {
            outln!("reject ({})", v.reason);
            Err(Exit(1).into())
        }
        Decision::Challenge { message, .. } => {
            outln!("challenge ({message})");
            Err(Exit(3).into())
        }
    }
}
