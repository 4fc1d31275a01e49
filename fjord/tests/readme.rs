//! The README's shell examples, read as a user copies them: the `fjord`
//! binary is on the `PATH` before the tour calls it, and in an example that
//! starts several nodes every client command names one of them.
//!
//! These read the text only (nothing is run): starting the README's
//! cluster on its fixed ports would clash with other tests.

const README: &str = include_str!("../../README.md");

/// The lines of every ```sh block, block by block.
fn shell_blocks() -> Vec<Vec<&'static str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in README.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => block.push(line),
            (None, _) => {}
        }
    }
    blocks
}

/// The `fjord` commands of a shell line, as words (comments cut, each
/// command of a pipeline on its own).
fn fjord_commands(line: &str) -> Vec<Vec<&str>> {
    let code = match line.find('#') {
        Some(at) if at == 0 || line[..at].ends_with(' ') => &line[..at],
        _ => line,
    };
    code.split(['|', ';', '&'])
        .map(|part| part.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.first() == Some(&"fjord"))
        .collect()
}

/// The value after `flag` (`--flag VALUE` or `--flag=VALUE`).
fn flag<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    words.iter().enumerate().find_map(|(i, w)| {
        if *w == name {
            words.get(i + 1).copied()
        } else {
            w.strip_prefix(eq.as_str())
        }
    })
}

#[test]
fn every_client_command_of_a_several_node_example_names_one_of_its_nodes() {
    let mut examples = 0;
    for block in shell_blocks() {
        let commands: Vec<Vec<&str>> = block.iter().flat_map(|l| fjord_commands(l)).collect();
        let is_serve = |c: &Vec<&str>| c.get(1) == Some(&"serve");
        let nodes: Vec<&str> = commands
            .iter()
            .filter(|c| is_serve(c))
            .filter_map(|c| flag(c, "--grpc-listen"))
            .collect();
        if nodes.len() < 2 || block.iter().any(|l| l.contains("FJORD_SERVER=")) {
            continue;
        }
        examples += 1;
        for command in commands.iter().filter(|c| !is_serve(c)) {
            let server = flag(command, "--server");
            assert!(
                server.is_some_and(|s| nodes.contains(&s)),
                "`{}` must name one of the example's nodes {nodes:?} with --server",
                command.join(" ")
            );
        }
    }
    assert!(examples > 0, "the README's cluster example is gone");
}

#[test]
fn the_tour_puts_the_fjord_binary_on_the_path_before_it_calls_it() {
    let tour = README
        .split("## A short tour")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let build = tour.find("cargo build --release -p fjord");
    let path = tour.find("export PATH=\"$PWD/target/release:$PATH\"");
    let first_call = tour.find("\nfjord ");
    assert!(
        build.is_some() && path.is_some(),
        "the tour must say how to get `fjord` on the PATH"
    );
    assert!(
        build < path && path < first_call,
        "the PATH is set after the first `fjord` call"
    );
}

#[test]
fn a_shell_line_yields_its_fjord_commands_without_comments() {
    let line = "seq 1 9 | fjord produce t --server a:1   # fjord topic list";
    assert_eq!(
        fjord_commands(line),
        [vec!["fjord", "produce", "t", "--server", "a:1"]]
    );
    assert!(fjord_commands("# fjord topic list").is_empty());
    assert_eq!(
        flag(&["fjord", "x", "--server=b:2"], "--server"),
        Some("b:2")
    );
}
