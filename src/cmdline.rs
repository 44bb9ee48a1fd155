//! Kernel command line tokenizing, as the kernel does it (`lib/cmdline.c`
//! `next_arg`): words separated by whitespace, double quotes group a value
//! with spaces (`key="a b"`), `key=value` or a bare `flag`.
//!
//! The board config file (`/etc/overlay-init.conf` in the initramfs) uses the
//! same syntax, with `#` comments, so one parser serves both.

/// One `key[=value]` word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// Splits a command line into parameters, in order.
pub fn parse(line: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = !quoted;
            } else {
                word.push(c);
            }
        }
        params.push(match word.split_once('=') {
            Some((k, v)) => Param {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => Param {
                key: word,
                value: None,
            },
        });
    }
    params
}

/// Parses a config file: command-line syntax, lines starting with `#` ignored.
pub fn parse_file(text: &str) -> Vec<Param> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: Option<&str>) -> Param {
        Param {
            key: k.into(),
            value: v.map(Into::into),
        }
    }

    #[test]
    fn splits_words_values_and_flags() {
        assert_eq!(
            parse("  console=ttyAMA0   rootwait root=PARTLABEL=rootfs\n"),
            vec![
                p("console", Some("ttyAMA0")),
                p("rootwait", None),
                p("root", Some("PARTLABEL=rootfs"))
            ]
        );
    }

    #[test]
    fn quotes_group_spaces_and_are_removed() {
        assert_eq!(
            parse(r#"a="x y" "b=c d" e"#),
            vec![p("a", Some("x y")), p("b", Some("c d")), p("e", None)]
        );
    }

    #[test]
    fn unterminated_quote_runs_to_end() {
        assert_eq!(parse(r#"a="x y"#), vec![p("a", Some("x y"))]);
    }

    #[test]
    fn empty_value_is_kept_distinct_from_flag() {
        assert_eq!(parse("a= b"), vec![p("a", Some("")), p("b", None)]);
    }

    #[test]
    fn file_comments_are_skipped() {
        let f = "# modules\noverlay.modules=a,b\n  # indented comment\noverlay.debug\n";
        assert_eq!(
            parse_file(f),
            vec![p("overlay.modules", Some("a,b")), p("overlay.debug", None)]
        );
    }
}
