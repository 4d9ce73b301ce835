//! Just enough of the Dockerfile syntax to check the repository's
//! Dockerfile: instructions with `\` continuations, comments, stages, and the
//! exec (JSON array) form of ENTRYPOINT, CMD and HEALTHCHECK.

use std::collections::BTreeMap;

/// One instruction: its keyword in upper case, its arguments as written
/// (continuation lines joined with a space), and the line it starts on.
#[derive(Debug, Clone)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    pub line: usize,
}

/// A build stage: `FROM base [AS name]` and what follows it.
#[derive(Debug)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// `COPY [--from=STAGE] SOURCE... DEST`.
#[derive(Debug, PartialEq, Eq)]
pub struct Copy {
    pub from: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

#[derive(Debug)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn parse(text: &str) -> Dockerfile {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for instruction in instructions(text) {
            if instruction.keyword == "FROM" {
                let words: Vec<&str> = instruction.args.split_whitespace().collect();
                let (base, name) = match words.as_slice() {
                    [base] => (*base, None),
                    [base, as_, name] if as_.eq_ignore_ascii_case("as") => (*base, Some((*name).to_owned())),
                    _ => panic!("line {}: FROM {} is not `FROM image [AS name]`", instruction.line, instruction.args),
                };
                stages.push(Stage { base: base.to_owned(), name, instructions: Vec::new() });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push(instruction);
            } else {
                assert_eq!(instruction.keyword, "ARG", "line {}: only ARG may come before FROM", instruction.line);
                global_args.push(instruction);
            }
        }
        Dockerfile { global_args, stages }
    }

    /// The stage the image is made of: the last one.
    pub fn final_stage(&self) -> &Stage {
        self.stages.last().expect("a Dockerfile has at least one FROM")
    }
}

impl Stage {
    /// Every instruction with this keyword, in order.
    pub fn all(&self, keyword: &str) -> Vec<&Instruction> {
        self.instructions.iter().filter(|i| i.keyword == keyword).collect()
    }

    /// The one instruction with this keyword; panics when there are several
    /// (only the last would count, which is a trap) or none.
    pub fn one(&self, keyword: &str) -> &Instruction {
        let found = self.all(keyword);
        match found.as_slice() {
            [one] => one,
            [] => panic!("stage {} has no {keyword}", self.base),
            _ => panic!("stage {} has {} {keyword} instructions; only the last counts", self.base, found.len()),
        }
    }

    pub fn copies(&self) -> Vec<Copy> {
        self.all("COPY").into_iter().map(|i| parse_copy(&i.args)).collect()
    }

    /// `ENV KEY=VALUE ...` of this stage.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for instruction in self.all("ENV").into_iter() {
            for pair in instruction.args.split_whitespace() {
                let (key, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: ENV {pair}: write KEY=VALUE", instruction.line));
                env.insert(key.to_owned(), value.trim_matches('"').to_owned());
            }
        }
        env
    }
}

/// The arguments of an exec-form instruction (`["a", "b"]`); panics on the
/// shell form, which a shell-less image cannot run.
pub fn exec_form(instruction: &Instruction) -> Vec<String> {
    exec_form_of(&instruction.args)
        .unwrap_or_else(|| panic!("line {}: {} must use the exec form [\"…\"]", instruction.line, instruction.keyword))
}

fn exec_form_of(args: &str) -> Option<Vec<String>> {
    let args = args.trim();
    args.starts_with('[').then(|| serde_json::from_str(args).ok()).flatten()
}

/// `HEALTHCHECK [--option=value ...] CMD [...]`: the options and the command.
pub fn healthcheck(instruction: &Instruction) -> (BTreeMap<String, String>, Vec<String>) {
    let (options, command) = instruction
        .args
        .split_once("CMD")
        .unwrap_or_else(|| panic!("line {}: HEALTHCHECK without CMD", instruction.line));
    let options = options
        .split_whitespace()
        .map(|option| {
            let (key, value) = option
                .strip_prefix("--")
                .and_then(|o| o.split_once('='))
                .unwrap_or_else(|| panic!("line {}: HEALTHCHECK option {option}", instruction.line));
            (key.to_owned(), value.to_owned())
        })
        .collect();
    let command = exec_form_of(command)
        .unwrap_or_else(|| panic!("line {}: HEALTHCHECK CMD must use the exec form", instruction.line));
    (options, command)
}

fn parse_copy(args: &str) -> Copy {
    let mut from = None;
    let mut paths = Vec::new();
    for word in args.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) => {
                if let Some(stage) = flag.strip_prefix("from=") {
                    from = Some(stage.to_owned());
                }
            }
            None => paths.push(word.to_owned()),
        }
    }
    let dest = paths.pop().expect("COPY has a destination");
    assert!(!paths.is_empty(), "COPY {args}: no source");
    Copy { from, sources: paths, dest }
}

/// Instructions in order. Comment lines (also inside a continued
/// instruction, as Docker does) and blank lines are skipped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (trimmed, false),
        };
        let (line, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body);
        if continues {
            pending = Some((line, joined));
            continue;
        }
        let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
        out.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_owned(), line });
    }
    assert!(pending.is_none(), "the Dockerfile ends inside a continued instruction");
    out
}

#[test]
fn the_parser_reads_stages_continuations_and_exec_forms() {
    let file = Dockerfile::parse(
        "# syntax=docker/dockerfile:1\nARG V=1\nFROM a:${V} AS one\nRUN x \\\n  # a comment\n  && y\n\
         FROM scratch\nCOPY --from=one /o/b /usr/bin/b\nENV A=1 B=\"two\"\n\
         HEALTHCHECK --interval=5s CMD [\"/usr/bin/b\", \"health\"]\nENTRYPOINT [\"/usr/bin/b\"]\n",
    );
    assert_eq!(file.global_args.len(), 1);
    assert_eq!((file.stages[0].base.as_str(), file.stages[0].name.as_deref()), ("a:${V}", Some("one")));
    assert_eq!(file.stages[0].one("RUN").args, "x && y");
    let last = file.final_stage();
    assert_eq!(
        last.copies(),
        vec![Copy { from: Some("one".into()), sources: vec!["/o/b".into()], dest: "/usr/bin/b".into() }]
    );
    assert_eq!(last.env().get("B").map(String::as_str), Some("two"));
    let (options, command) = healthcheck(last.one("HEALTHCHECK"));
    assert_eq!((options["interval"].as_str(), command), ("5s", vec!["/usr/bin/b".to_owned(), "health".to_owned()]));
    assert_eq!(exec_form(last.one("ENTRYPOINT")), vec!["/usr/bin/b".to_owned()]);
}
