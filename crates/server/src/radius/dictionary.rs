//! The RADIUS dictionary in use: the built-in one plus the files named in
//! `[radius] dictionaries`.

use std::path::Path;

use anyhow::Context as _;
use tessera_radius::Dictionary;

use crate::config::Config;

pub fn load(cfg: &Config) -> anyhow::Result<Dictionary> {
    let mut dict = Dictionary::builtin().clone();
    for file in &cfg.radius.dictionaries {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading dictionary {}", file.display()))?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let include = move |name: &str| -> Result<String, String> {
            std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
        };
        let extra = Dictionary::parse(&text, &file.display().to_string(), &include)
            .with_context(|| format!("parsing dictionary {}", file.display()))?;
        dict.merge(extra);
    }
    Ok(dict)
}
