//! The man pages, generated from the clap definitions: `lbctl(1)` and
//! one `lbctl-COMMAND(1)` per subcommand (`lbctl manpages DIR`, which
//! `scripts/package` runs).

use std::path::Path;

use clap::Command;

/// Writes `lbctl.1` and one `lbctl-COMMAND.1` per visible subcommand,
/// from the clap definitions.
pub fn write(mut cmd: Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    cmd.build();
    let page = |c: Command, file: String| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        std::fs::write(dir.join(file), buf)
    };
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("lbctl-{}", sub.get_name());
        page(sub.clone().name(name.clone()), format!("{name}.1"))?;
    }
    page(cmd, "lbctl.1".into())
}
