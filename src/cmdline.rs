//! Kernel command line tokenizing, as the kernel does it (`lib/cmdline.c`
//! `next_arg`): words separated by whitespace, double quotes group a value
//! with spaces (`key="a b"`), `key=value` or a bare `flag`, and a bare `--`
//! ends the kernel's parameters (what follows is init's).
//!
//! The board config file (`/etc/overlay-init.conf` in the initramfs) uses the
//! same syntax, line by line, with `#` comments, so one tokenizer serves both.
//!
//! Both are untrusted input: the kernel passes the command line's bytes as
//! they are (any byte but NUL, not necessarily UTF-8) and a board file can
//! hold anything. So the tokenizer works on bytes and borrows them: no
//! allocation, whatever the length or the number of words, and no word is
//! rejected here (the config decides what a value means, and says why it
//! refuses one). Reading is bounded too ([`read_text`]).

use std::path::Path;

/// One `key[=value]` word, borrowed from the text, as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// The most of a command line or board file that is read: more is
/// ignored, and said (the kernel's own command line is at most 1 KiB on
/// ARM, COMMAND_LINE_SIZE; a board file is a few lines).
pub const MAX_TEXT: usize = 64 * 1024;

/// The kernel's `isspace` on the ASCII range (its table also counts 0xA0,
/// Latin-1's no-break space, which in a UTF-8 board file is part of a
/// character: we do not split there).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The words of a kernel command line, in order, up to a bare `--`.
pub fn parse(line: &[u8]) -> Words<'_> {
    Words {
        rest: line,
        stop_at_dashes: true,
    }
}

/// The words of a board file: each line tokenized as a command line (`--`
/// is an ordinary word there), lines whose first non-blank is `#` skipped.
pub fn parse_file(text: &[u8]) -> impl Iterator<Item = Param<'_>> {
    text.split(|&b| b == b'\n')
        .filter(|l| l.iter().find(|&&b| !is_space(b)) != Some(&b'#'))
        .flat_map(|l| Words {
            rest: l,
            stop_at_dashes: false,
        })
}

/// Iterator over the words of one text ([`parse`], [`parse_file`]).
#[derive(Clone, Debug)]
pub struct Words<'a> {
    rest: &'a [u8],
    stop_at_dashes: bool,
}

impl<'a> Iterator for Words<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let start = self.rest.iter().position(|&b| !is_space(b))?;
        let mut args = self.rest.get(start..)?;
        // A word that starts with a quote: the quote is not part of it,
        // and neither is a closing quote at its end.
        let quoted = args.first() == Some(&b'"');
        if quoted {
            args = args.get(1..)?;
        }
        let mut in_quote = quoted;
        let mut equals = None;
        let mut end = args.len();
        for (i, &b) in args.iter().enumerate() {
            if is_space(b) && !in_quote {
                end = i;
                break;
            }
            if b == b'=' && equals.is_none() {
                equals = Some(i);
            }
            if b == b'"' {
                in_quote = !in_quote;
            }
        }
        self.rest = args.get(end..).unwrap_or_default();
        let word = args.get(..end).unwrap_or_default();
        let ends_in_quote = word.last() == Some(&b'"');
        let param = match equals {
            None => Param {
                key: if quoted && ends_in_quote {
                    word.get(..end - 1).unwrap_or_default()
                } else {
                    word
                },
                value: None,
            },
            Some(eq) => {
                let mut value = word.get(eq + 1..).unwrap_or_default();
                // A value in quotes: `key="a b"` is `a b`.
                if value.first() == Some(&b'"') || quoted {
                    if value.first() == Some(&b'"') {
                        value = value.get(1..).unwrap_or_default();
                    }
                    if ends_in_quote {
                        value = value
                            .get(..value.len().saturating_sub(1))
                            .unwrap_or_default();
                    }
                }
                Param {
                    key: word.get(..eq).unwrap_or_default(),
                    value: Some(value),
                }
            }
        };
        if self.stop_at_dashes && param.key == b"--" && param.value.is_none() {
            self.rest = &[];
            return None;
        }
        Some(param)
    }
}

/// Bytes as they may be shown in a message: UTF-8 text as it is, any other
/// byte and every control character as `\xNN`, and, past `max` bytes of
/// that, the start and the end around an ellipsis (the subject stays
/// recognisable, the message short). Only the ends of a long input are
/// looked at: the cost is bounded by `max`, not by the input.
pub fn shown(b: &[u8], max: usize) -> String {
    let window = 2 * max;
    if b.len() > 2 * window {
        let head = escaped(b.get(..window).unwrap_or_default());
        let tail = escaped(b.get(b.len() - window..).unwrap_or_default());
        return around_ellipsis(&head, &tail, max);
    }
    let all = escaped(b);
    if all.len() <= max {
        return all;
    }
    around_ellipsis(&all, &all, max)
}

/// The first two thirds of `max` bytes of `head`, an ellipsis, and the
/// last third of `tail` (on character boundaries).
fn around_ellipsis(head: &str, tail: &str, max: usize) -> String {
    let h = floor_boundary(head, max * 2 / 3);
    let t = ceil_boundary(tail, tail.len().saturating_sub(max - max * 2 / 3));
    format!(
        "{}…{}",
        head.get(..h).unwrap_or_default(),
        tail.get(t..).unwrap_or_default()
    )
}

fn escaped(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                push_hex(&mut out, u32::from(c));
            } else {
                out.push(c);
            }
        }
        for &x in chunk.invalid() {
            push_hex(&mut out, u32::from(x));
        }
    }
    out
}

fn push_hex(out: &mut String, v: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    for n in [v >> 4 & 15, v & 15] {
        out.push(char::from(*HEX.get(n as usize).unwrap_or(&b'?')));
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Reads a command line or board file: at most [`MAX_TEXT`] + 1 bytes (one
/// more than the config reads says the file was longer). Opened
/// non-blocking and checked to be a regular file first, so that a FIFO or
/// a device node in its place cannot hang PID 1 or feed it for ever.
pub fn read_text(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    crate::probe::read_up_to(&f, MAX_TEXT + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(k: &'a str, v: Option<&'a str>) -> Param<'a> {
        Param {
            key: k.as_bytes(),
            value: v.map(str::as_bytes),
        }
    }

    fn words(line: &str) -> Vec<Param<'_>> {
        parse(line.as_bytes()).collect()
    }

    #[test]
    fn splits_words_values_and_flags() {
        assert_eq!(
            words("  console=ttyAMA0   rootwait root=PARTLABEL=rootfs\n"),
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
            words(r#"a="x y" "b=c d" e "f""#),
            vec![
                p("a", Some("x y")),
                p("b", Some("c d")),
                p("e", None),
                p("f", None)
            ]
        );
    }

    /// As the kernel: only a quote that starts the word or the value, and
    /// the one that ends the word, are removed.
    #[test]
    fn quotes_inside_a_value_stay_as_in_the_kernel() {
        assert_eq!(words(r#"a=x"y z""#), vec![p("a", Some(r#"x"y z""#))]);
        assert_eq!(
            words(r#"a="" b=" c="#),
            vec![p("a", Some("")), p("b", Some(" c="))]
        );
    }

    #[test]
    fn unterminated_quote_runs_to_end() {
        assert_eq!(words(r#"a="x y"#), vec![p("a", Some("x y"))]);
        assert_eq!(words(r#"""#), vec![p("", None)]);
    }

    #[test]
    fn empty_value_is_kept_distinct_from_flag() {
        assert_eq!(words("a= b"), vec![p("a", Some("")), p("b", None)]);
    }

    /// What follows a bare `--` is init's, not the kernel's or ours.
    #[test]
    fn a_bare_double_dash_ends_the_parameters() {
        assert_eq!(
            words("a=1 -- overlay.data=tmpfs single"),
            vec![p("a", Some("1"))]
        );
        assert_eq!(words("--=x b"), vec![p("--", Some("x")), p("b", None)]);
    }

    #[test]
    fn any_byte_is_a_word_byte_and_nothing_allocates_or_fails() {
        let line = b"k=caf\xe9 \xff\xfe=\x01\x7f x=\"\xc3\xa0 y\"";
        let got: Vec<Param> = parse(line).collect();
        assert_eq!(
            got,
            vec![
                Param {
                    key: b"k",
                    value: Some(b"caf\xe9")
                },
                Param {
                    key: b"\xff\xfe",
                    value: Some(b"\x01\x7f")
                },
                Param {
                    key: b"x",
                    value: Some(b"\xc3\xa0 y")
                },
            ]
        );
    }

    #[test]
    fn file_comments_are_skipped_and_dashes_are_ordinary() {
        let f = b"# modules\noverlay.modules=a,b\n  # indented comment\r\n-- overlay.debug\n";
        assert_eq!(
            parse_file(f).collect::<Vec<_>>(),
            vec![
                p("overlay.modules", Some("a,b")),
                p("--", None),
                p("overlay.debug", None)
            ]
        );
    }

    #[test]
    fn a_quote_does_not_run_past_its_line_in_a_file() {
        let f = b"a=\"x y\nb=2\n";
        assert_eq!(
            parse_file(f).collect::<Vec<_>>(),
            vec![p("a", Some("x y")), p("b", Some("2"))]
        );
    }

    #[test]
    fn shown_escapes_and_shortens() {
        assert_eq!(shown(b"PARTLABEL=data", 64), "PARTLABEL=data");
        assert_eq!(shown(b"caf\xe9\n\x1b", 64), "caf\\xe9\\x0a\\x1b");
        assert_eq!(shown("é".as_bytes(), 64), "é");
        let long = shown(&[b'B'; 400], 60);
        assert_eq!(long, format!("{}…{}", "B".repeat(40), "B".repeat(20)));
        let huge = shown(&[b'B'; 1 << 20], 60);
        assert_eq!(huge, long, "only the ends of a long input count");
        let wide = shown("é".repeat(100).as_bytes(), 61);
        assert!(wide.starts_with("éé") && wide.ends_with("éé") && wide.contains('…'));
        assert!(wide.len() <= 61 + "…".len());
    }

    #[test]
    fn reading_is_bounded_and_refuses_what_is_not_a_file() {
        let d = std::env::temp_dir().join(format!("cmdline-read-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let big = d.join("big");
        std::fs::write(&big, vec![b'a'; MAX_TEXT * 3]).unwrap();
        assert_eq!(read_text(&big).unwrap().len(), MAX_TEXT + 1);
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Would block for ever if opened blocking (no writer).
        assert_eq!(
            read_text(&fifo).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert!(read_text(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
