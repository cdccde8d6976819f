//! sendmail's command line, parsed by hand: getopts cannot read `-fADDR`, `-oi`, `-q30m`
//! or `-bs`. The grammar is POSIX getopt's, as sendmail and Postfix use it:
//! - options cluster (`-ti` is `-t -i`); an option that takes a value takes the rest of
//!   its argument (`-fADDR`, `-oi`, `-bs`, `-B8BITMIME`) or else the next argument
//!   (`-f ADDR`); `-q` takes only an attached value (`-q`, `-q30m`, `-qRsite`);
//! - option parsing stops at `--` or at the first argument that is not an option (getopt
//!   with `+`, as sendmail and Postfix): `sendmail a@b -t` has two recipients, `a@b`
//!   and the bare name `-t`, as it has in Postfix (`-` alone is refused: it is nobody);
//! - each remaining argument is an RFC 5322 address list (Postfix does the same), so
//!   `sendmail 'a@b, Name <c@d>'` is two recipients.
//!
//! Meaning (sendmail(8), Postfix sendmail(1)): `-bm` (default) delivers a message from
//! stdin, `-bs` speaks SMTP on stdin/stdout, `-bp` lists the queue, `-q…` flushes it,
//! `-bi`/`-I` rebuild (here: check) the aliases; `-t` takes recipients from the headers
//! (command-line recipients are added to them, as Postfix ≥ 2.1 does), `-i`/`-oi` make a
//! lone `.` ordinary text, `-f`/`-r` set the envelope sender (`''` and `'<>'` are the
//! null sender), `-F` the full name of a generated `From:`. Accepted and ignored, as
//! Postfix and dma do: every other `-o…`, `-A…`, `-B type`, `-C file` (sendmail's config
//! file; postling's is `postling send -c FILE`, split off first by
//! [`split_postling_config`], or `$POSTLING_CONFIG`), `-e…`, `-G`, `-h N`, `-L label`,
//! `-m`, `-n`, `-N dsn`, `-O opt=val`, `-p proto`, `-R ret`, `-U`, `-V envid`, `-X file`.
//! Anything else is a [`UsageError`]: a one-line message for exit code 64.
//!
//! The sender and recipients are only RFC 5322 syntax here; the caller qualifies bare
//! names and checks them with `smtp::address::Mailbox`.

use std::fmt;

use super::addresses;

/// What the command is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-bm`, the default: read a message from stdin and queue it.
    Deliver,
    /// `-bs`: an SMTP session on stdin/stdout.
    Smtp,
    /// `-bp`: list the queue (`mailq`).
    ListQueue,
    /// `-q`, `-q30m`, `-qRsite`, …: one delivery pass over the whole queue.
    Flush,
    /// `-bi`, `-I`: the `newaliases` job (postling checks the aliases file).
    NewAliases,
}

/// A parsed sendmail command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub mode: Mode,
    /// `-t`: recipients from `To:`, `Cc:`, `Bcc:` (or their `Resent-` forms).
    pub read_recipients_from_headers: bool,
    /// `-i`, `-oi`: a line with a single `.` does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR`, `-r ADDR`: the envelope sender, `Some("")` for the null sender.
    pub sender: Option<String>,
    /// `-F NAME`: the full name for a generated `From:`.
    pub full_name: Option<String>,
    /// `-v` (any number of them).
    pub verbose: bool,
    /// The addr-specs of the operands, in order (bare names like `root` kept as given).
    pub recipients: Vec<String>,
}

/// A command line we cannot honour; the text is one line, without a program name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an option letter uses a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// A flag: `-t`.
    Nothing,
    /// A required value, attached or in the next argument: `-fADDR`, `-f ADDR`.
    Value,
    /// An optional value, attached only: `-q`, `-q30m`.
    AttachedValue,
}

/// The option letters sendmail(8) and Postfix's sendmail(1) define that we read or
/// ignore. Letters not here are usage errors.
const OPTIONS: &[(char, Takes)] = &[
    ('A', Takes::Value),         // -Am / -Ac: submission kind, ignored
    ('B', Takes::Value),         // body type 7BIT / 8BITMIME, ignored
    ('C', Takes::Value),         // sendmail.cf, ignored
    ('F', Takes::Value),         // full name
    ('G', Takes::Nothing),       // gateway submission, ignored
    ('I', Takes::Nothing),       // newaliases
    ('L', Takes::Value),         // syslog label, ignored
    ('N', Takes::Value),         // DSN notify, ignored
    ('O', Takes::Value),         // long option=value, ignored
    ('R', Takes::Value),         // DSN return, ignored
    ('U', Takes::Nothing),       // initial user submission, ignored
    ('V', Takes::Value),         // DSN envid, ignored
    ('X', Takes::Value),         // traffic log file, ignored
    ('b', Takes::Value),         // mode
    ('e', Takes::Value),         // error mode, ignored
    ('f', Takes::Value),         // envelope sender
    ('h', Takes::Value),         // hop count, ignored
    ('i', Takes::Nothing),       // ignore dots
    ('m', Takes::Nothing),       // me too, ignored
    ('n', Takes::Nothing),       // no aliasing, ignored
    ('o', Takes::Value),         // -oX option; -oi read, others ignored
    ('p', Takes::Value),         // protocol, ignored
    ('q', Takes::AttachedValue), // queue run
    ('r', Takes::Value),         // envelope sender (obsolete -f)
    ('t', Takes::Nothing),       // recipients from headers
    ('v', Takes::Nothing),       // verbose
];

/// For `postling send [-c FILE] [sendmail options] [RECIPIENT...]`: postling's own
/// `-c FILE` (or `-cFILE`), recognised only as the first argument, split from the
/// sendmail arguments that follow. Under the name `sendmail` there is no `-c`: the
/// configuration comes from `$POSTLING_CONFIG` or the default path.
pub fn split_postling_config(args: &[String]) -> Result<(Option<String>, &[String]), UsageError> {
    let Some(first) = args.first() else {
        return Ok((None, args));
    };
    match first.strip_prefix("-c") {
        Some("") => match args.get(1) {
            Some(file) => Ok((Some(file.clone()), &args[2..])),
            None => Err(UsageError("option -c requires an argument".to_string())),
        },
        Some(file) => Ok((Some(file.to_string()), &args[1..])),
        None => Ok((None, args)),
    }
}

/// Parse sendmail's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let mut inv = Invocation {
        mode: Mode::Deliver,
        read_recipients_from_headers: false,
        ignore_dots: false,
        sender: None,
        full_name: None,
        verbose: false,
        recipients: Vec::new(),
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // The first operand ends the options (getopt with `+`); `-` alone is one.
            i -= 1;
            break;
        };
        if cluster.starts_with('-') {
            return Err(UsageError(format!("unknown option {}", printable(arg))));
        }
        for (at, letter) in cluster.char_indices() {
            let rest = &cluster[at + letter.len_utf8()..];
            let takes = OPTIONS
                .iter()
                .find(|(l, _)| *l == letter)
                .map(|(_, t)| *t)
                .ok_or_else(|| unknown(letter))?;
            let value = match takes {
                Takes::Nothing => {
                    flag(&mut inv, letter);
                    continue;
                }
                Takes::AttachedValue => rest,
                Takes::Value if !rest.is_empty() => rest,
                Takes::Value => {
                    let next = args.get(i).ok_or_else(|| {
                        UsageError(format!("option -{letter} requires an argument"))
                    })?;
                    i += 1;
                    next.as_str()
                }
            };
            with_value(&mut inv, letter, value)?;
            break; // the value took the rest of the cluster
        }
    }
    for operand in &args[i..] {
        if operand == "-" {
            return Err(UsageError("'-' is not a recipient".to_string()));
        }
        let list = addresses::parse_address_list(operand.as_bytes())
            .map_err(|e| UsageError(format!("bad recipient '{}': {e}", printable(operand))))?;
        inv.recipients.extend(list);
    }
    check_mode(&inv, args.len() > i)?;
    Ok(inv)
}

/// `s` with control characters escaped (`\n`), so a message stays on one line.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn unknown(letter: char) -> UsageError {
    if letter == 'c' {
        // `postling send -c FILE` is postling's, not sendmail's -c (HoldExpensive), and
        // reading it as a flag would make FILE a recipient.
        return UsageError(
            "unknown option -c (postling's configuration is 'postling send -c FILE' or \
             $POSTLING_CONFIG)"
                .to_string(),
        );
    }
    UsageError(format!(
        "unknown option -{}",
        printable(&letter.to_string())
    ))
}

fn flag(inv: &mut Invocation, letter: char) {
    match letter {
        'I' => inv.mode = Mode::NewAliases,
        'i' => inv.ignore_dots = true,
        't' => inv.read_recipients_from_headers = true,
        'v' => inv.verbose = true,
        _ => {} // G, U, m, n: accepted and ignored
    }
}

fn with_value(inv: &mut Invocation, letter: char, value: &str) -> Result<(), UsageError> {
    match letter {
        'b' => inv.mode = mode(value)?,
        'q' => inv.mode = Mode::Flush, // -q, -q30m, -qRsite, -qIid: all one pass here
        'f' | 'r' => inv.sender = Some(sender(letter, value)?),
        'F' => inv.full_name = Some(value.to_string()),
        // -oi is sendmail's IgnoreDots; every other -oX is a sendmail.cf option.
        'o' if value == "i" => inv.ignore_dots = true,
        _ => {} // A B C L N O R V X e h o p: accepted and ignored
    }
    Ok(())
}

/// `-bX`.
fn mode(value: &str) -> Result<Mode, UsageError> {
    match value {
        "m" => Ok(Mode::Deliver),
        "s" => Ok(Mode::Smtp),
        "p" => Ok(Mode::ListQueue),
        "i" => Ok(Mode::NewAliases),
        "d" => Err(UsageError(
            "-bd is not supported (run 'postling serve')".to_string(),
        )),
        _ => Err(UsageError(format!(
            "unsupported mode -b{}",
            printable(value)
        ))),
    }
}

/// `-f`/`-r`: `''` or `<>` is the null sender; otherwise one address, angle brackets
/// and display name allowed (`-f 'Cron <cron@host>'`), as Postfix reads it.
fn sender(letter: char, value: &str) -> Result<String, UsageError> {
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    if trimmed.is_empty() || trimmed == "<>" {
        return Ok(String::new());
    }
    let bad = |why: &dyn fmt::Display| {
        UsageError(format!(
            "bad -{letter} sender '{}': {why}",
            printable(value)
        ))
    };
    let list = addresses::parse_address_list(value.as_bytes()).map_err(|e| bad(&e))?;
    match <[String; 1]>::try_from(list) {
        Ok([one]) => Ok(one),
        Err(_) => Err(bad(&"expected one address")),
    }
}

/// Conflicts Postfix also refuses: the non-delivery modes take no recipients and no -t.
fn check_mode(inv: &Invocation, has_operands: bool) -> Result<(), UsageError> {
    let what = match inv.mode {
        Mode::Deliver => return Ok(()),
        Mode::Smtp => "-bs",
        Mode::ListQueue => "-bp",
        Mode::Flush => "-q",
        Mode::NewAliases => "-bi",
    };
    if inv.read_recipients_from_headers {
        return Err(UsageError(format!("-t cannot be used with {what}")));
    }
    if has_operands {
        return Err(UsageError(format!("{what} takes no recipients")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per invocation, so a case reads `args → meaning`: the mode, then the
    /// fields that differ from the defaults: `-t`, `-i`, `-v`, `f=<sender>`, `F=name`,
    /// `rcpt=a,b`.
    fn summary(inv: &Invocation) -> String {
        let mut s = format!("{:?}", inv.mode);
        if inv.read_recipients_from_headers {
            s.push_str(" -t");
        }
        if inv.ignore_dots {
            s.push_str(" -i");
        }
        if inv.verbose {
            s.push_str(" -v");
        }
        if let Some(f) = &inv.sender {
            s.push_str(&format!(" f=<{f}>"));
        }
        if let Some(name) = &inv.full_name {
            s.push_str(&format!(" F={name}"));
        }
        if !inv.recipients.is_empty() {
            s.push_str(&format!(" rcpt={}", inv.recipients.join(",")));
        }
        s
    }

    /// (arguments, summary or `error: message`)
    const CASES: &[(&[&str], &str)] = &[
        // cron (cronie, vixie cron) and Debian's cron.
        (
            &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
            "Deliver -i F=CronDaemon rcpt=root",
        ),
        (
            &["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root"],
            "Deliver -i F=CronDaemon rcpt=root",
        ),
        // PHP's default sendmail_path, and with an additional_parameters sender.
        (&["-t", "-i"], "Deliver -t -i"),
        (&["-ti"], "Deliver -t -i"),
        (&["-t", "-i", "-fwww@x.org"], "Deliver -t -i f=<www@x.org>"),
        // git send-email: `sendmail -i -f SENDER RCPT…`.
        (
            &["-i", "-f", "dev@x.org", "a@x.org", "b@x.org"],
            "Deliver -i f=<dev@x.org> rcpt=a@x.org,b@x.org",
        ),
        // mutt: `sendmail -oem -oi -- addr…`, with -f when use_envelope_from is set.
        (&["-oem", "-oi", "--", "a@x.org"], "Deliver -i rcpt=a@x.org"),
        (
            &["-oem", "-oi", "-f", "me@x.org", "--", "a@y", "b@z"],
            "Deliver -i f=<me@x.org> rcpt=a@y,b@z",
        ),
        // mailx / s-nail: `sendmail -i -- addr`, -v from `set verbose`.
        (&["-i", "-v", "--", "a@b"], "Deliver -i -v rcpt=a@b"),
        (&["-vv"], "Deliver -v"),
        // `--` makes a recipient that looks like an option a recipient.
        (&["--", "-t"], "Deliver rcpt=-t"),
        // Modes; the last one wins, as in sendmail.
        (&["-bs"], "Smtp"),
        (&["-b", "s"], "Smtp"),
        (&["-bp"], "ListQueue"),
        (&["-bi"], "NewAliases"),
        (&["-I"], "NewAliases"),
        (&["-bm", "a@b"], "Deliver rcpt=a@b"),
        (&["-q"], "Flush"),
        (&["-q30m"], "Flush"),
        (&["-qRexample.org"], "Flush"),
        (&["-v", "-q"], "Flush -v"),
        (&["-bp", "-bm"], "Deliver"),
        (&["-q", "-bs"], "Smtp"),
        // The null sender.
        (&["-f", "", "a@b"], "Deliver f=<> rcpt=a@b"),
        (&["-f", "<>", "a@b"], "Deliver f=<> rcpt=a@b"),
        (&["-f<>", "a@b"], "Deliver f=<> rcpt=a@b"),
        (&["-f", " <> "], "Deliver f=<>"),
        (&["-r", "<>"], "Deliver f=<>"),
        // Sender forms: attached, separate, -r, angle brackets, a display name, a bare
        // name; the last -f wins.
        (&["-fa@b"], "Deliver f=<a@b>"),
        (&["-r", "a@b"], "Deliver f=<a@b>"),
        (&["-ra@b"], "Deliver f=<a@b>"),
        (&["-f", "<a@b>"], "Deliver f=<a@b>"),
        (&["-f", "Cron Daemon <cron@h>"], "Deliver f=<cron@h>"),
        (&["-f", "nobody"], "Deliver f=<nobody>"),
        (&["-f", "a@b", "-f", "c@d"], "Deliver f=<c@d>"),
        // Full names; a value may look like an option.
        (&["-F", "Jane Doe"], "Deliver F=Jane Doe"),
        (&["-F", ""], "Deliver F="),
        (&["-F", "-t"], "Deliver F=-t"),
        // Clusters: flags, then a letter whose value is the rest or the next argument.
        (&["-tif", "a@b"], "Deliver -t -i f=<a@b>"),
        (&["-itfa@b"], "Deliver -t -i f=<a@b>"),
        (&["-toi"], "Deliver -t -i"),
        (&["-o", "i"], "Deliver -i"),
        (&["-oiX"], "Deliver"), // -o with the value "iX" is not -oi
        // Accepted and ignored, as Postfix and dma do.
        (
            &[
                "-oem",
                "-odb",
                "-oQ/x",
                "-oAaliases",
                "-om",
                "-o7",
                "-B",
                "7BIT",
                "-N",
                "never",
                "-R",
                "hdrs",
                "-L",
                "label",
                "-O",
                "DeliveryMode=b",
                "-X",
                "/tmp/l",
                "-U",
                "-V",
                "envid",
                "-Am",
                "-Ac",
                "-h",
                "17",
                "-n",
                "-m",
                "-em",
                "-e",
                "q",
                "-G",
                "-C",
                "/etc/mail/sendmail.cf",
                "-pESMTP",
                "a@b",
            ],
            "Deliver rcpt=a@b",
        ),
        // Recipients: several arguments, each an address list (Postfix).
        (&["a@b, c@d", "e@f"], "Deliver rcpt=a@b,c@d,e@f"),
        (
            &["\"Doe, Jane\" <jane@x>, root"],
            "Deliver rcpt=jane@x,root",
        ),
        (&["team: a@b, c@d;"], "Deliver rcpt=a@b,c@d"),
        (&[""], "Deliver"),
        (&[], "Deliver"),
        // The first operand ends the options (getopt with `+`).
        (&["a@b", "-t"], "Deliver rcpt=a@b,-t"),
        // -t with command-line recipients: both, as Postfix ≥ 2.1.
        (&["-t", "a@b"], "Deliver -t rcpt=a@b"),
        // Errors.
        (&["-x"], "error: unknown option -x"),
        (&["-tx"], "error: unknown option -x"),
        (&["-ö"], "error: unknown option -ö"),
        (&["-\n"], "error: unknown option -\\n"),
        (&["--x\ny"], "error: unknown option --x\\ny"),
        (&["-b\r"], "error: unsupported mode -b\\r"),
        (&["--help"], "error: unknown option --help"),
        (
            &["-c", "/etc/postling.conf"],
            "error: unknown option -c (postling's configuration is \
             'postling send -c FILE' or $POSTLING_CONFIG)",
        ),
        (&["-f"], "error: option -f requires an argument"),
        (&["-t", "-F"], "error: option -F requires an argument"),
        (&["-b"], "error: option -b requires an argument"),
        (
            &["-bd"],
            "error: -bd is not supported (run 'postling serve')",
        ),
        (&["-bv", "a@b"], "error: unsupported mode -bv"),
        (&["-bsx"], "error: unsupported mode -bsx"),
        (&["-bs", "a@b"], "error: -bs takes no recipients"),
        (&["-bp", "a@b"], "error: -bp takes no recipients"),
        (&["-q", "30m"], "error: -q takes no recipients"),
        (&["-bi", "x"], "error: -bi takes no recipients"),
        (&["-t", "-bs"], "error: -t cannot be used with -bs"),
        (&["-t", "-q"], "error: -t cannot be used with -q"),
        (
            &["-f", "a@b, c@d"],
            "error: bad -f sender 'a@b, c@d': expected one address",
        ),
        (
            &["-f", "a@b c"],
            "error: bad -f sender 'a@b c': missing comma between addresses",
        ),
        (
            &["-r", "team:;"],
            "error: bad -r sender 'team:;': expected one address",
        ),
        (
            &["a@b c@d"],
            "error: bad recipient 'a@b c@d': missing comma between addresses",
        ),
        (&["<>"], "error: bad recipient '<>': empty address <>"),
        (&["-"], "error: '-' is not a recipient"),
        // Control characters are escaped, so the message stays on one line.
        (
            &["a@b,\nc\x07"],
            "error: bad recipient 'a@b,\\nc\\u{7}': control character",
        ),
        (
            &["-f", "a@b\r\nc"],
            "error: bad -f sender 'a@b\\r\\nc': missing comma between addresses",
        ),
    ];

    #[test]
    fn postling_config_option_is_split_off_first() {
        /// (arguments, Ok((config, the rest)) or the error)
        type ConfigCase = (
            &'static [&'static str],
            Result<(Option<&'static str>, &'static [&'static str]), &'static str>,
        );
        const CASES: &[ConfigCase] = &[
            (&[], Ok((None, &[]))),
            (&["-t", "-i"], Ok((None, &["-t", "-i"]))),
            (
                &["-c", "/etc/p.conf", "-t", "a@b"],
                Ok((Some("/etc/p.conf"), &["-t", "a@b"])),
            ),
            (
                &["-c/etc/p.conf", "-bs"],
                Ok((Some("/etc/p.conf"), &["-bs"])),
            ),
            (&["-c", "f"], Ok((Some("f"), &[]))),
            (&["-c"], Err("option -c requires an argument")),
            // Only first: later it is sendmail's (unknown) -c, refused by `parse`.
            (&["-t", "-c", "f"], Ok((None, &["-t", "-c", "f"]))),
        ];
        for (args, want) in CASES {
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let got = split_postling_config(&argv).map(|(c, rest)| (c, rest.to_vec()));
            let want = want
                .map(|(c, rest)| {
                    let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                    (c.map(str::to_string), rest)
                })
                .map_err(|e| UsageError(e.to_string()));
            assert_eq!(got, want, "args {args:?}");
        }
    }

    #[test]
    fn invocation_table() {
        for (args, want) in CASES {
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let got = match parse(&argv) {
                Ok(inv) => summary(&inv),
                Err(e) => {
                    assert!(!e.0.contains('\n'), "multi-line error for {args:?}");
                    format!("error: {e}")
                }
            };
            assert_eq!(got, *want, "args {args:?}");
        }
    }
}
