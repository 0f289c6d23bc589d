//! Completions and the man page, generated from the same clap definitions as `--help`,
//! so they cannot drift from the command line.

use clap::CommandFactory;

use super::Cli;

pub(super) fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "kafka-transit",
        &mut std::io::stdout(),
    );
    Ok(())
}

pub(super) fn man() -> anyhow::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_man_page_and_completions_name_every_command() {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kafka-transit", &mut script);
            let script = String::from_utf8(script).unwrap();
            for command in [
                "run",
                "validate",
                "demo",
                "health",
                "policy",
                "completions",
                "man",
            ] {
                assert!(script.contains(command), "{shell}: {command}");
                assert!(page.contains(command), "man page: {command}");
            }
        }
    }
}
