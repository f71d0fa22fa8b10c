//! HTML of the UI's pages. Every value from the database or a user is escaped with [`esc`].

use std::collections::HashMap;
use std::fmt::Write as _;

use super::User;
use super::queries::RunRow;
use crate::api::{Artifact, JobStatus, RunStatus};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page around `body`.
pub fn layout(title: &str, user: Option<&User>, body: &str) -> String {
    let nav = match user {
        Some(u) => format!(
            "<nav><a href=\"/\">Runs</a><a href=\"/ui/promotions\">Promotions</a>\
             <span class=\"who\">{}</span>\
             <form method=\"post\" action=\"/ui/logout\"><button class=\"link\">Sign out</button></form></nav>",
            esc(&u.name)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · pipe</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/ui/static/app.css\">\
         <script src=\"/ui/static/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">pipe</a>{nav}</header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// The sign-in page.
pub fn login(failed: bool) -> String {
    let flash = if failed {
        "<p class=\"flash error\" id=\"login-error\">that token is not a valid user token</p>"
    } else {
        ""
    };
    layout(
        "sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{flash}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
             <label for=\"token\">User token (<code>pipe server token --kind user --name NAME</code>)</label>\
             <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form>"
        ),
    )
}

/// A state badge.
pub fn badge(state: &str, conclusion: Option<&str>) -> String {
    let (class, text) = match (state, conclusion) {
        ("done", Some(c)) => (c.to_owned(), c.to_owned()),
        (s, _) => (s.to_owned(), s.to_owned()),
    };
    format!(
        "<span class=\"badge {}\">{}</span>",
        esc(&class),
        esc(&text)
    )
}

fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round();
        format!("{}m {:02}s", (s / 60.0).floor(), s % 60.0)
    }
}

/// The rows of the runs table.
pub fn runs_rows(runs: &[RunRow]) -> String {
    let mut out = String::new();
    for r in runs {
        let _ = write!(
            out,
            "<tr data-run=\"{id}\"><td><a href=\"/ui/runs/{id}\">#{id}</a></td><td>{wf}</td>\
             <td>{ev}</td><td>{badge}</td><td>{done}/{jobs}</td><td><time>{created}</time></td>\
             <td>{dur}</td></tr>",
            id = r.id,
            wf = esc(&r.workflow),
            ev = esc(&r.event),
            badge = badge(&r.state, r.conclusion.as_deref()),
            done = r.done,
            jobs = r.jobs,
            created = esc(&r.created),
            dur = duration(r.seconds),
        );
    }
    if runs.is_empty() {
        out.push_str(
            "<tr><td colspan=\"7\" class=\"empty\">no runs yet: <code>pipe submit</code> sends one</td></tr>",
        );
    }
    out
}

/// The runs list.
pub fn runs(user: &User, runs: &[RunRow]) -> String {
    layout(
        "runs",
        Some(user),
        &format!(
            "<h1>Runs</h1><table class=\"runs\"><thead><tr><th>run</th><th>workflow</th>\
             <th>event</th><th>state</th><th>jobs</th><th>submitted</th><th>duration</th></tr>\
             </thead><tbody id=\"runs\" data-live=\"/ui/api/runs\">{}</tbody></table>",
            runs_rows(runs)
        ),
    )
}

/// Each job's level in the DAG: 0 without needs, else one more than its deepest need.
pub fn levels(jobs: &[JobStatus]) -> Vec<usize> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    let mut memo: Vec<Option<usize>> = vec![None; jobs.len()];
    fn level(
        i: usize,
        jobs: &[JobStatus],
        index: &HashMap<&str, usize>,
        memo: &mut Vec<Option<usize>>,
        depth: usize,
    ) -> usize {
        if let Some(Some(l)) = memo.get(i) {
            return *l;
        }
        // The plan has no cycles; the depth bound only guards against a corrupt row.
        if depth > jobs.len() {
            return 0;
        }
        let l = jobs.get(i).map_or(0, |j| {
            j.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()))
                .map(|&n| level(n, jobs, index, memo, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        });
        if let Some(m) = memo.get_mut(i) {
            *m = Some(l);
        }
        l
    }
    (0..jobs.len())
        .map(|i| level(i, jobs, &index, &mut memo, 0))
        .collect()
}

/// What a job's card says about its state.
pub fn job_label(j: &JobStatus) -> String {
    match (j.state.as_str(), j.result.as_deref()) {
        ("done", Some(r)) => r.to_owned(),
        ("leased", _) => "running".to_owned(),
        (s, _) => s.to_owned(),
    }
}

fn job_class(j: &JobStatus) -> String {
    match (j.state.as_str(), j.result.as_deref()) {
        ("done", Some(r)) => r.to_owned(),
        ("leased", _) => "running".to_owned(),
        (s, _) => s.to_owned(),
    }
}

/// A run's page: the DAG, then the selected job's panel (filled by the script).
pub fn run(user: &User, run: &RunStatus, artifacts: &[Artifact]) -> String {
    let levels = levels(&run.jobs);
    let depth = levels.iter().copied().max().map_or(0, |m| m + 1);
    let mut dag = String::from("<div class=\"dag\" id=\"dag\">");
    for level in 0..depth {
        let _ = write!(dag, "<ol class=\"level\" data-level=\"{level}\">");
        for (j, _) in run.jobs.iter().zip(&levels).filter(|(_, l)| **l == level) {
            let needs = if j.needs.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"needs\">needs {}</span>",
                    esc(&j.needs.join(", "))
                )
            };
            let _ = write!(
                dag,
                "<li><a class=\"job {class}\" href=\"?job={id}\" data-job=\"{id}\" data-key=\"{key}\" \
                 id=\"job-{id}\"><span class=\"dot\"></span><span class=\"name\">{name}</span>\
                 <span class=\"state\">{label}</span>{needs}</a></li>",
                class = esc(&job_class(j)),
                id = j.id,
                key = esc(&j.key),
                name = esc(j.name.as_deref().unwrap_or(&j.key)),
                label = esc(&job_label(j)),
            );
        }
        dag.push_str("</ol>");
    }
    dag.push_str("</div>");
    let body = format!(
        "<h1>Run #{id} <small>{wf} · {ev}</small> <span id=\"run-state\">{badge}</span></h1>\
         {dag}\
         <section class=\"panel\" id=\"panel\" hidden>\
           <h2><span id=\"panel-title\"></span> <span id=\"panel-state\" class=\"badge\"></span>\
             <small id=\"panel-attempt\"></small></h2>\
           <div class=\"log\" id=\"log\" role=\"log\" aria-live=\"polite\"></div>\
           <h3>Outputs</h3><table class=\"outputs\" id=\"outputs\"><tbody></tbody></table>\
           <h3>Step summaries</h3><div class=\"summary\" id=\"summary\"><p class=\"empty\">none yet</p></div>\
         </section>{artifacts}",
        id = run.id,
        artifacts = artifacts_section(run.id, artifacts),
        wf = esc(&run.workflow_path),
        ev = esc(&run.event),
        badge = badge(&run.state, run.conclusion.as_deref()),
    );
    layout(
        &format!("run #{}", run.id),
        Some(user),
        &format!("<div id=\"run\" data-run=\"{}\">{body}</div>", run.id),
    )
}

/// How many files of one artifact the run page links to (the rest are counted).
const ARTIFACT_FILES_SHOWN: usize = 50;

/// The run's artifacts: name, uploading job, size, and a download link per file.
pub fn artifacts_section(run: i64, artifacts: &[Artifact]) -> String {
    let mut out = String::from("<section class=\"artifacts\" id=\"artifacts\"><h2>Artifacts</h2>");
    if artifacts.is_empty() {
        out.push_str("<p class=\"empty\">none</p></section>");
        return out;
    }
    out.push_str("<ul>");
    for a in artifacts {
        let bytes: i64 = a.files.iter().map(|f| f.size).sum();
        let _ = write!(
            out,
            "<li class=\"artifact\" data-artifact=\"{name}\"><strong>{name}</strong> \
             <small>{n} file{s}, {size} · job {job} attempt {attempt}</small><ul>",
            name = esc(&a.name),
            n = a.files.len(),
            s = if a.files.len() == 1 { "" } else { "s" },
            size = human_size(bytes),
            job = a.job_id,
            attempt = a.attempt,
        );
        for f in a.files.iter().take(ARTIFACT_FILES_SHOWN) {
            let _ = write!(
                out,
                "<li><a href=\"/ui/runs/{run}/blobs/{digest}?file={file}\">{path}</a> \
                 <small>{size}</small></li>",
                digest = esc(&f.digest),
                file = esc(&query_escape(f.path.rsplit('/').next().unwrap_or(&f.path))),
                path = esc(&f.path),
                size = human_size(f.size),
            );
        }
        if a.files.len() > ARTIFACT_FILES_SHOWN {
            let _ = write!(
                out,
                "<li><small>and {} more</small></li>",
                a.files.len() - ARTIFACT_FILES_SHOWN
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("</ul></section>");
    out
}

/// Bytes as `12.3 KiB`.
fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986) for a query value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Markdown (a step summary) as HTML; raw HTML in it is shown as text, never interpreted,
/// and links keep only `http`, `https` and `mailto` targets.
pub fn markdown(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    if md.trim().is_empty() {
        return "<p class=\"empty\">none</p>".to_owned();
    }
    let safe_url = |u: &str| {
        let l = u.trim().to_ascii_lowercase();
        l.starts_with("http://")
            || l.starts_with("https://")
            || l.starts_with("mailto:")
            || l.starts_with('#')
            || l.starts_with('/')
    };
    let parser =
        Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|ev| {
            match ev {
                Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
                Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                e => e,
            }
        });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, needs: &[&str]) -> JobStatus {
        JobStatus {
            id: 1,
            key: key.into(),
            state: "queued".into(),
            attempt: 0,
            result: None,
            accepted_attempt: None,
            outputs: Default::default(),
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
            leg: None,
            name: None,
        }
    }

    #[test]
    fn artifacts_link_each_file_by_digest_and_escape_names() {
        let a = Artifact {
            name: "<b>bundle".into(),
            job_id: 7,
            attempt: 2,
            info: serde_json::json!({}),
            files: vec![crate::api::ArtifactFile {
                path: "sub/a b.txt".into(),
                digest: "ab".repeat(32),
                size: 2048,
                mode: 0o644,
            }],
        };
        let html = artifacts_section(3, &[a]);
        assert!(html.contains("&lt;b&gt;bundle"), "{html}");
        assert!(!html.contains("<b>bundle"), "{html}");
        assert!(
            html.contains(&format!(
                "/ui/runs/3/blobs/{}?file=a%20b.txt",
                "ab".repeat(32)
            )),
            "{html}"
        );
        assert!(html.contains("1 file, 2.0 KiB · job 7 attempt 2"), "{html}");
        assert!(artifacts_section(3, &[]).contains("none"));
    }

    #[test]
    fn levels_follow_the_longest_path() {
        let jobs = vec![
            job("build", &[]),
            job("lint", &[]),
            job("test", &["build"]),
            job("deploy", &["test", "lint"]),
            job("notify", &["build", "deploy"]),
        ];
        assert_eq!(levels(&jobs), vec![0, 0, 1, 2, 3]);
    }

    #[test]
    fn markdown_never_passes_html_or_script_links() {
        let html =
            markdown("# Done\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) | a |\n");
        assert!(html.contains("<h1>Done</h1>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let row = runs_rows(&[RunRow {
            id: 3,
            workflow: "<b>.yml".into(),
            event: "push".into(),
            state: "done".into(),
            conclusion: Some("success".into()),
            jobs: 2,
            done: 2,
            created: "2026-11-26T10:00:00Z".into(),
            seconds: 75.0,
        }]);
        assert!(row.contains("&lt;b&gt;.yml"), "{row}");
        assert!(
            row.contains("<span class=\"badge success\">success</span>"),
            "{row}"
        );
        assert!(row.contains("1m 15s"), "{row}");
    }
}
