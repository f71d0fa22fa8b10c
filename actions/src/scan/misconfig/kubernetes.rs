//! Kubernetes workload checks with Trivy's ids: every container of a Pod, Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, Job or CronJob (init and ephemeral containers too),
//! in every document of a multi-document file.

use pipe_runner::source::FileId;
use pipe_runner::yaml::{self, Node, ScalarValue};

use super::{Check, Problem, line_at};
use crate::scan::secret::Rules;
use crate::scan::severity::Severity;

/// The Kubernetes checks.
pub static CHECKS: [Check; 17] = [
    Check {
        id: "KSV-0001",
        aliases: &["KSV001", "AVD-KSV-0001"],
        title: "Privilege escalation allowed",
        severity: Severity::Medium,
        resolution: "Set `securityContext.allowPrivilegeEscalation: false`.",
    },
    Check {
        id: "KSV-0005",
        aliases: &["KSV005", "AVD-KSV-0005"],
        title: "`SYS_ADMIN` capability added",
        severity: Severity::High,
        resolution: "Remove `SYS_ADMIN` from `securityContext.capabilities.add`.",
    },
    Check {
        id: "KSV-0006",
        aliases: &["KSV006", "AVD-KSV-0006"],
        title: "Docker socket mounted",
        severity: Severity::High,
        resolution: "Do not mount `/var/run/docker.sock`; it gives root on the node.",
    },
    Check {
        id: "KSV-0008",
        aliases: &["KSV008", "AVD-KSV-0008"],
        title: "Host IPC namespace shared",
        severity: Severity::High,
        resolution: "Remove `hostIPC: true`.",
    },
    Check {
        id: "KSV-0009",
        aliases: &["KSV009", "AVD-KSV-0009"],
        title: "Host network shared",
        severity: Severity::High,
        resolution: "Remove `hostNetwork: true`.",
    },
    Check {
        id: "KSV-0010",
        aliases: &["KSV010", "AVD-KSV-0010"],
        title: "Host PID namespace shared",
        severity: Severity::High,
        resolution: "Remove `hostPID: true`.",
    },
    Check {
        id: "KSV-0011",
        aliases: &["KSV011", "AVD-KSV-0011"],
        title: "CPU limit not set",
        severity: Severity::Low,
        resolution: "Set `resources.limits.cpu`.",
    },
    Check {
        id: "KSV-0012",
        aliases: &["KSV012", "AVD-KSV-0012"],
        title: "Runs as root allowed",
        severity: Severity::Medium,
        resolution: "Set `securityContext.runAsNonRoot: true` on the container or the pod.",
    },
    Check {
        id: "KSV-0013",
        aliases: &["KSV013", "AVD-KSV-0013"],
        title: "Image uses the `latest` tag or no tag",
        severity: Severity::Medium,
        resolution: "Pin the image to a version tag or a digest.",
    },
    Check {
        id: "KSV-0014",
        aliases: &["KSV014", "AVD-KSV-0014"],
        title: "Root file system is writable",
        severity: Severity::High,
        resolution: "Set `securityContext.readOnlyRootFilesystem: true`.",
    },
    Check {
        id: "KSV-0017",
        aliases: &["KSV017", "AVD-KSV-0017"],
        title: "Privileged container",
        severity: Severity::High,
        resolution: "Remove `securityContext.privileged: true`.",
    },
    Check {
        id: "KSV-0018",
        aliases: &["KSV018", "AVD-KSV-0018"],
        title: "Memory limit not set",
        severity: Severity::Low,
        resolution: "Set `resources.limits.memory`.",
    },
    Check {
        id: "KSV-0023",
        aliases: &["KSV023", "AVD-KSV-0023"],
        title: "`hostPath` volume mounted",
        severity: Severity::Medium,
        resolution: "Use another volume type than `hostPath`.",
    },
    Check {
        id: "KSV-0109",
        aliases: &["KSV109", "AVD-KSV-0109"],
        title: "ConfigMap holds a secret",
        severity: Severity::High,
        resolution: "Move the value to a Secret (or an external secret store).",
    },
    Check {
        id: "KSV-0022",
        aliases: &["KSV022", "AVD-KSV-0022"],
        title: "Non-default capability added",
        severity: Severity::Medium,
        resolution: "Do not add capabilities beyond the runtime's defaults (`NET_BIND_SERVICE` aside).",
    },
    Check {
        id: "KSV-0024",
        aliases: &["KSV024", "AVD-KSV-0024"],
        title: "`hostPort` used",
        severity: Severity::High,
        resolution: "Remove `hostPort`; expose the port through a Service.",
    },
    Check {
        id: "KSV-0105",
        aliases: &["KSV105", "AVD-KSV-0105"],
        title: "Runs as UID 0",
        severity: Severity::Low,
        resolution: "Set `runAsUser` to a non-zero UID.",
    },
];

fn by(id: &str) -> &'static Check {
    CHECKS.iter().find(|c| c.id == id).unwrap_or(&CHECKS[0])
}

fn is_true(n: Option<&Node>) -> bool {
    n.and_then(Node::as_scalar)
        .is_some_and(|s| s.value == ScalarValue::Bool(true))
}

fn is_false(n: Option<&Node>) -> bool {
    n.and_then(Node::as_scalar)
        .is_some_and(|s| s.value == ScalarValue::Bool(false))
}

/// The documents of a multi-document file: (byte offset, text).
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            out.push((start, &text[start..off]));
            start = off + line.len();
        }
        off += line.len();
    }
    out.push((start, &text[start..]));
    out
}

/// Checks Kubernetes manifests (files that are not manifests give nothing).
pub fn check(text: &str, rules: Option<&Rules>) -> Vec<Problem> {
    let mut out = Vec::new();
    if !(text.contains("apiVersion") && text.contains("kind")) {
        return out;
    }
    for (base, doc) in documents(text) {
        let loaded = yaml::load(FileId(0), doc);
        let Some(root) = loaded.root else { continue };
        let (Some(kind), Some(_)) = (
            root.get("kind").and_then(Node::as_str),
            root.get("apiVersion"),
        ) else {
            continue;
        };
        let name = root
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("");
        let line = |n: &Node| line_at(text, base + n.span.start as usize);
        let mut push = |id: &str, n: &Node, message: String, subject: String| {
            out.push(Problem {
                check: by(id),
                line: line(n),
                end_line: line(n),
                message,
                subject: format!("{kind}/{name} {subject}"),
            });
        };
        if kind == "ConfigMap" {
            let rules = rules.or_else(|| Rules::builtin().ok());
            if let (Some(rules), Some(data)) = (rules, root.get("data").and_then(Node::as_map)) {
                for e in data {
                    let v = e.value.as_str().unwrap_or("");
                    let k = e.key.as_str().unwrap_or("");
                    let probe = format!("{k}: {v}\n");
                    if !rules.scan("configmap.yaml", probe.as_bytes()).is_empty() {
                        push(
                            "KSV-0109",
                            &e.key,
                            format!("ConfigMap key `{k}` holds a secret"),
                            k.to_owned(),
                        );
                    }
                }
            }
            continue;
        }
        let pod = match kind {
            "Pod" => root.get("spec"),
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "ReplicationController" => root
                .get("spec")
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("spec")),
            "CronJob" => root
                .get("spec")
                .and_then(|s| s.get("jobTemplate"))
                .and_then(|j| j.get("spec"))
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("spec")),
            _ => None,
        };
        let Some(pod) = pod else { continue };
        for (key, id) in [
            ("hostIPC", "KSV-0008"),
            ("hostNetwork", "KSV-0009"),
            ("hostPID", "KSV-0010"),
        ] {
            if let Some(n) = pod.get(key).filter(|n| is_true(Some(n))) {
                push(id, n, format!("`{key}: true`"), key.to_owned());
            }
        }
        for v in pod.get("volumes").and_then(Node::as_seq).unwrap_or(&[]) {
            if let Some(hp) = v.get("hostPath") {
                let p = hp.get("path").and_then(Node::as_str).unwrap_or("");
                let vname = v.get("name").and_then(Node::as_str).unwrap_or("");
                push(
                    "KSV-0023",
                    hp,
                    format!("volume `{vname}` mounts host path `{p}`"),
                    format!("volume {vname}"),
                );
                if p.ends_with("docker.sock") {
                    push(
                        "KSV-0006",
                        hp,
                        format!("volume `{vname}` mounts the Docker socket"),
                        format!("volume {vname}"),
                    );
                }
            }
        }
        let pod_sc = pod.get("securityContext");
        let pod_non_root = is_true(pod_sc.and_then(|s| s.get("runAsNonRoot")));
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for c in pod.get(list).and_then(Node::as_seq).unwrap_or(&[]) {
                let cname = c.get("name").and_then(Node::as_str).unwrap_or("");
                let subj = format!("{list} {cname}");
                let at = c.get("name").unwrap_or(c);
                let sc = c.get("securityContext");
                if let Some(p) = sc
                    .and_then(|s| s.get("privileged"))
                    .filter(|n| is_true(Some(n)))
                {
                    push(
                        "KSV-0017",
                        p,
                        format!("container `{cname}` is privileged"),
                        subj.clone(),
                    );
                }
                if !is_false(sc.and_then(|s| s.get("allowPrivilegeEscalation"))) {
                    push(
                        "KSV-0001",
                        at,
                        format!(
                            "container `{cname}` does not set `allowPrivilegeEscalation: false`"
                        ),
                        subj.clone(),
                    );
                }
                let c_non_root = sc.and_then(|s| s.get("runAsNonRoot"));
                if !(is_true(c_non_root) || (pod_non_root && !is_false(c_non_root))) {
                    push(
                        "KSV-0012",
                        at,
                        format!("container `{cname}` may run as root (`runAsNonRoot` is not true)"),
                        subj.clone(),
                    );
                }
                if !is_true(sc.and_then(|s| s.get("readOnlyRootFilesystem"))) {
                    push(
                        "KSV-0014",
                        at,
                        format!("container `{cname}` has a writable root file system"),
                        subj.clone(),
                    );
                }
                for cap in sc
                    .and_then(|s| s.get("capabilities"))
                    .and_then(|c| c.get("add"))
                    .and_then(Node::as_seq)
                    .unwrap_or(&[])
                {
                    let name = cap.as_str().unwrap_or("").to_ascii_uppercase();
                    let name = name.trim_start_matches("CAP_");
                    if !name.is_empty() && !matches!(name, "SYS_ADMIN" | "NET_BIND_SERVICE") {
                        push(
                            "KSV-0022",
                            cap,
                            format!("container `{cname}` adds `{name}`"),
                            format!("{subj} {name}"),
                        );
                    }
                    if name == "SYS_ADMIN" {
                        push(
                            "KSV-0005",
                            cap,
                            format!("container `{cname}` adds `SYS_ADMIN`"),
                            subj.clone(),
                        );
                    }
                }
                if let Some(img) = c.get("image").and_then(|n| n.as_str().map(|s| (n, s))) {
                    let (n, s) = img;
                    let last = s.rsplit('/').next().unwrap_or(s);
                    if !s.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
                        push(
                            "KSV-0013",
                            n,
                            format!("container `{cname}` uses `{s}`"),
                            subj.clone(),
                        );
                    }
                }
                for port in c.get("ports").and_then(Node::as_seq).unwrap_or(&[]) {
                    if let Some(hp) = port.get("hostPort") {
                        push(
                            "KSV-0024",
                            hp,
                            format!(
                                "container `{cname}` binds host port `{}`",
                                hp.as_str().unwrap_or("")
                            ),
                            format!("{subj} {}", hp.as_str().unwrap_or("")),
                        );
                    }
                }
                let uid_zero =
                    |n: Option<&Node>| n.and_then(Node::as_str).is_some_and(|u| u.trim() == "0");
                if let Some(u) = sc
                    .and_then(|s| s.get("runAsUser"))
                    .filter(|u| uid_zero(Some(u)))
                {
                    push(
                        "KSV-0105",
                        u,
                        format!("container `{cname}` runs as UID 0"),
                        subj.clone(),
                    );
                } else if sc.and_then(|s| s.get("runAsUser")).is_none()
                    && let Some(u) = pod_sc
                        .and_then(|s| s.get("runAsUser"))
                        .filter(|u| uid_zero(Some(u)))
                {
                    push(
                        "KSV-0105",
                        u,
                        format!("container `{cname}` runs as UID 0 (pod `securityContext`)"),
                        subj.clone(),
                    );
                }
                let limits = c.get("resources").and_then(|r| r.get("limits"));
                if list != "ephemeralContainers" {
                    if limits.and_then(|l| l.get("cpu")).is_none() {
                        push(
                            "KSV-0011",
                            at,
                            format!("container `{cname}` has no CPU limit"),
                            subj.clone(),
                        );
                    }
                    if limits.and_then(|l| l.get("memory")).is_none() {
                        push(
                            "KSV-0018",
                            at,
                            format!("container `{cname}` has no memory limit"),
                            subj.clone(),
                        );
                    }
                }
            }
        }
    }
    out
}
