//! `container.options` and `services.*.options`: the `docker create` flags GitHub passes on,
//! parsed into what the Engine API takes. Unknown flags are an error that names them.

/// What the supported flags set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// `--user`/`-u`.
    pub user: Option<String>,
    /// `--cpus` in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// `--memory`/`-m` in bytes.
    pub memory: Option<i64>,
    /// `--env`/`-e`.
    pub env: Vec<String>,
    /// `--health-cmd` (run with the shell, `CMD-SHELL`).
    pub health_cmd: Option<String>,
    /// `--health-interval` in nanoseconds.
    pub health_interval: Option<i64>,
    /// `--health-timeout` in nanoseconds.
    pub health_timeout: Option<i64>,
    /// `--health-start-period` in nanoseconds.
    pub health_start_period: Option<i64>,
    /// `--health-retries`.
    pub health_retries: Option<i64>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--init`.
    pub init: bool,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--hostname`/`-h`.
    pub hostname: Option<String>,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// `--add-host`.
    pub extra_hosts: Vec<String>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<i64>,
    /// `--tmpfs`.
    pub tmpfs: Vec<String>,
    /// `--workdir`/`-w`.
    pub workdir: Option<String>,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--label`/`-l`.
    pub labels: Vec<(String, String)>,
    /// `--volume`/`-v`.
    pub volumes: Vec<String>,
    /// `--publish`/`-p`.
    pub ports: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
}

/// Splits a command line the way a POSIX shell splits words (quotes and backslashes).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated `'` quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated `\"` quote".to_owned()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated `\"` quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `512m`, `1g`, `1024` → bytes.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (like `512m` or `2g`)"))?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("`{s}` is not a size (like `512m` or `2g`)"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok((n * mul as f64) as i64)
}

/// `1s`, `500ms`, `1m30s`, `2h` → nanoseconds (Go's duration syntax).
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not a duration (like `10s` or `1m30s`)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mul = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mul;
        rest = &rest[unit_len..];
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(total as i64)
}

/// Parses `options`.
pub fn parse(options: &str) -> Result<Options, String> {
    let words = split_words(options)?;
    let mut o = Options::default();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_owned(), Some(v.to_owned())),
            _ => (w.clone(), None),
        };
        let boolean = matches!(
            flag.as_str(),
            "--privileged" | "--init" | "--rm" | "-t" | "-i"
        );
        let value = if boolean {
            inline.unwrap_or_else(|| "true".to_owned())
        } else if let Some(v) = inline {
            v
        } else {
            let Some(v) = words.get(i) else {
                return Err(format!("container option `{flag}` needs a value"));
            };
            i += 1;
            v.clone()
        };
        let int = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("`{flag}` needs a whole number, not `{v}`"))
        };
        match flag.as_str() {
            "--user" | "-u" => o.user = Some(value),
            "--cpus" => {
                let n: f64 = value
                    .parse()
                    .map_err(|_| format!("`--cpus` needs a number, not `{value}`"))?;
                #[allow(clippy::cast_possible_truncation)]
                {
                    o.nano_cpus = Some((n * 1e9) as i64);
                }
            }
            "--memory" | "-m" => o.memory = Some(parse_bytes(&value)?),
            "--shm-size" => o.shm_size = Some(parse_bytes(&value)?),
            "--env" | "-e" => o.env.push(value),
            "--health-cmd" => o.health_cmd = Some(value),
            "--health-interval" => o.health_interval = Some(parse_duration_ns(&value)?),
            "--health-timeout" => o.health_timeout = Some(parse_duration_ns(&value)?),
            "--health-start-period" => o.health_start_period = Some(parse_duration_ns(&value)?),
            "--health-retries" => o.health_retries = Some(int(&value)?),
            "--pids-limit" => o.pids_limit = Some(int(&value)?),
            "--privileged" => o.privileged = value != "false",
            "--init" => o.init = value != "false",
            "--rm" | "-t" | "-i" => {}
            "--cap-add" => o.cap_add.push(value),
            "--cap-drop" => o.cap_drop.push(value),
            "--hostname" | "-h" => o.hostname = Some(value),
            "--network-alias" => o.aliases.push(value),
            "--add-host" => o.extra_hosts.push(value),
            "--tmpfs" => o.tmpfs.push(value),
            "--workdir" | "-w" => o.workdir = Some(value),
            "--entrypoint" => o.entrypoint = Some(value),
            "--platform" => o.platform = Some(value),
            "--security-opt" => o.security_opt.push(value),
            "--volume" | "-v" => o.volumes.push(value),
            "--publish" | "-p" => o.ports.push(value),
            "--label" | "-l" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                o.labels.push((k.to_owned(), v.to_owned()));
            }
            other if other.starts_with('-') => {
                return Err(format!("container option `{other}` is not supported"));
            }
            other => return Err(format!("unexpected `{other}` in container options")),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_flags() {
        let o = parse(
            "--user 1000:1000 --cpus 1.5 --memory=512m -e A=1 --health-cmd \"pg_isready -U x\" \
             --health-interval 1s --health-retries 5 --health-timeout 500ms --privileged",
        )
        .expect("parses");
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.nano_cpus, Some(1_500_000_000));
        assert_eq!(o.memory, Some(512 << 20));
        assert_eq!(o.env, vec!["A=1".to_owned()]);
        assert_eq!(o.health_cmd.as_deref(), Some("pg_isready -U x"));
        assert_eq!(o.health_interval, Some(1_000_000_000));
        assert_eq!(o.health_timeout, Some(500_000_000));
        assert_eq!(o.health_retries, Some(5));
        assert!(o.privileged);
    }

    #[test]
    fn unknown_and_incomplete_flags_are_named() {
        assert_eq!(
            parse("--frobnicate 1").expect_err("unknown"),
            "container option `--frobnicate` is not supported"
        );
        assert_eq!(
            parse("--user").expect_err("no value"),
            "container option `--user` needs a value"
        );
        assert!(
            parse("--memory lots")
                .expect_err("bad size")
                .contains("`lots`")
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_duration_ns("1m30s"), Ok(90_000_000_000));
        assert!(parse_duration_ns("soon").is_err());
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\"" f\ g"#).expect("splits"),
            vec!["a", "b c", "d \"e\"", "f g"]
        );
    }
}
