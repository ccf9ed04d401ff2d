//! The DaemonSet against the Pod Security Standards
//! (kubernetes.io/docs/concepts/security/pod-security-standards), written here as a table of
//! the spec's checks — each a control name, its profile and the pod fields it restricts — and
//! applied to what Kustomize and the chart render. The agent needs hostPath volumes and two
//! capabilities: exactly those baseline checks fail, which is why the docs and the Namespace
//! say `privileged`. Any other baseline failure (a host namespace, a privileged container, a
//! seccomp or SELinux setting) is a regression the docs do not explain.

mod common;

use common::*;
use std::collections::BTreeSet;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Profile {
    Baseline,
    Restricted,
}

/// The capabilities baseline allows to add (the spec's list).
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// The SELinux types baseline allows (`spec…seLinuxOptions.type`).
const BASELINE_SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
/// The sysctls baseline allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// The volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// A check's verdict on a pod spec: the offending values (empty: passes).
type Check = fn(&serde_json::Value, &serde_json::Value) -> Vec<String>;

/// Every container of a pod spec (containers, initContainers, ephemeralContainers).
fn containers(spec: &serde_json::Value) -> Vec<&serde_json::Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// The pod's securityContext and every container's, each with a name for the finding.
fn contexts(spec: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    let mut out = vec![("pod".to_string(), &spec["securityContext"])];
    for c in containers(spec) {
        out.push((
            c["name"].as_str().unwrap_or("?").to_string(),
            &c["securityContext"],
        ));
    }
    out
}

fn host_process(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    contexts(spec)
        .into_iter()
        .filter(|(_, sc)| sc["windowsOptions"]["hostProcess"] == true)
        .map(|(n, _)| format!("{n}: hostProcess"))
        .collect()
}

fn host_namespaces(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec[**k] == true)
        .map(|k| k.to_string())
        .collect()
}

fn privileged(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| c["securityContext"]["privileged"] == true)
        .map(|c| format!("{}: privileged", c["name"]))
        .collect()
}

fn added_caps(spec: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .flat_map(|c| {
            c["securityContext"]["capabilities"]["add"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

fn capabilities_baseline(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    added_caps(spec)
        .into_iter()
        .filter(|c| !BASELINE_CAPS.contains(&c.as_str()))
        .collect()
}

fn host_path(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| v["hostPath"]["path"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn host_ports(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter(|p| p["hostPort"].as_u64().is_some_and(|n| n != 0))
        .map(|p| p["hostPort"].to_string())
        .collect()
}

/// The field (1.30+) and the annotation before it: unset, RuntimeDefault or Localhost.
fn apparmor(spec: &serde_json::Value, meta: &serde_json::Value) -> Vec<String> {
    let mut bad: Vec<String> = contexts(spec)
        .into_iter()
        .filter(|(_, sc)| {
            sc["appArmorProfile"]["type"]
                .as_str()
                .is_some_and(|t| !["RuntimeDefault", "Localhost"].contains(&t))
        })
        .map(|(n, _)| format!("{n}: appArmorProfile"))
        .collect();
    for (k, v) in meta["annotations"].as_object().into_iter().flatten() {
        let value = v.as_str().unwrap_or_default();
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            bad.push(format!("{k}: {value}"));
        }
    }
    bad
}

fn selinux(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    let mut bad = Vec::new();
    for (n, sc) in contexts(spec) {
        let o = &sc["seLinuxOptions"];
        if let Some(t) = o["type"].as_str() {
            if !t.is_empty() && !BASELINE_SELINUX_TYPES.contains(&t) {
                bad.push(format!("{n}: type {t}"));
            }
        }
        for k in ["user", "role"] {
            if o[k].as_str().is_some_and(|v| !v.is_empty()) {
                bad.push(format!("{n}: {k}"));
            }
        }
    }
    bad
}

fn proc_mount(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| {
            c["securityContext"]["procMount"]
                .as_str()
                .is_some_and(|m| m != "Default")
        })
        .map(|c| format!("{}: procMount", c["name"]))
        .collect()
}

fn seccomp_baseline(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    contexts(spec)
        .into_iter()
        .filter(|(_, sc)| sc["seccompProfile"]["type"] == "Unconfined")
        .map(|(n, _)| format!("{n}: Unconfined"))
        .collect()
}

fn sysctls(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(str::to_string)
        .collect()
}

fn volume_types(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    let mut bad = BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        for k in v.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !RESTRICTED_VOLUMES.contains(&k.as_str()) {
                bad.insert(k.clone());
            }
        }
    }
    bad.into_iter().collect()
}

fn privilege_escalation(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != false)
        .map(|c| format!("{}: allowPrivilegeEscalation", c["name"]))
        .collect()
}

/// Each container's effective value of a securityContext field (its own, else the pod's).
fn effective<'a>(spec: &'a serde_json::Value, c: &'a serde_json::Value, k: &str) -> &'a serde_json::Value {
    match &c["securityContext"][k] {
        serde_json::Value::Null => &spec["securityContext"][k],
        v => v,
    }
}

fn non_root(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| effective(spec, c, "runAsNonRoot") != &serde_json::Value::Bool(true))
        .map(|c| format!("{}: runAsNonRoot", c["name"]))
        .collect()
}

fn non_root_user(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    contexts(spec)
        .into_iter()
        .filter(|(_, sc)| sc["runAsUser"] == 0)
        .map(|(n, _)| format!("{n}: runAsUser 0"))
        .collect()
}

fn seccomp_restricted(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    let ok =
        |v: &serde_json::Value| ["RuntimeDefault", "Localhost"].contains(&v["type"].as_str().unwrap_or(""));
    containers(spec)
        .into_iter()
        .filter(|c| !ok(effective(spec, c, "seccompProfile")))
        .map(|c| format!("{}: seccompProfile", c["name"]))
        .collect()
}

fn capabilities_restricted(spec: &serde_json::Value, _: &serde_json::Value) -> Vec<String> {
    let mut bad: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| {
            !c["securityContext"]["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        })
        .map(|c| format!("{}: drop ALL", c["name"]))
        .collect();
    bad.extend(added_caps(spec).into_iter().filter(|c| c != "NET_BIND_SERVICE"));
    bad
}

/// The spec's controls, in its order.
const CHECKS: &[(&str, Profile, Check)] = &[
    ("HostProcess", Profile::Baseline, host_process),
    ("Host Namespaces", Profile::Baseline, host_namespaces),
    ("Privileged Containers", Profile::Baseline, privileged),
    ("Capabilities", Profile::Baseline, capabilities_baseline),
    ("HostPath Volumes", Profile::Baseline, host_path),
    ("Host Ports", Profile::Baseline, host_ports),
    ("AppArmor", Profile::Baseline, apparmor),
    ("SELinux", Profile::Baseline, selinux),
    ("/proc Mount Type", Profile::Baseline, proc_mount),
    ("Seccomp", Profile::Baseline, seccomp_baseline),
    ("Sysctls", Profile::Baseline, sysctls),
    ("Volume Types", Profile::Restricted, volume_types),
    ("Privilege Escalation", Profile::Restricted, privilege_escalation),
    ("Running as Non-root", Profile::Restricted, non_root),
    ("Running as Non-root user", Profile::Restricted, non_root_user),
    ("Seccomp (restricted)", Profile::Restricted, seccomp_restricted),
    (
        "Capabilities (restricted)",
        Profile::Restricted,
        capabilities_restricted,
    ),
];

/// The failing checks of a profile (and those below it) on the DaemonSet of `rendered`:
/// (control, offending values).
fn failing(rendered: &str, profile: Profile) -> Vec<(&'static str, Vec<String>)> {
    let docs = yaml_docs(rendered);
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let (spec, meta) = (
        &ds["spec"]["template"]["spec"],
        &ds["spec"]["template"]["metadata"],
    );
    CHECKS
        .iter()
        .filter(|(_, p, _)| *p <= profile)
        .map(|(name, _, check)| (*name, check(spec, meta)))
        .filter(|(_, bad)| !bad.is_empty())
        .collect()
}

fn names(failing: &[(&'static str, Vec<String>)]) -> Vec<&'static str> {
    failing.iter().map(|(n, _)| *n).collect()
}

/// The table itself can fail: a pod spec made to break every baseline check does.
#[test]
fn every_check_of_the_table_can_fail() {
    let bad = r#"
kind: DaemonSet
spec:
  template:
    metadata:
      annotations: {container.apparmor.security.beta.kubernetes.io/a: unconfined}
    spec:
      hostNetwork: true
      securityContext:
        windowsOptions: {hostProcess: true}
        sysctls: [{name: kernel.msgmax, value: "1"}]
        seLinuxOptions: {type: spc_t}
        seccompProfile: {type: Unconfined}
        runAsUser: 0
      volumes: [{name: h, hostPath: {path: /}}]
      containers:
        - name: a
          ports: [{containerPort: 80, hostPort: 80}]
          securityContext:
            privileged: true
            procMount: Unmasked
            capabilities: {add: [SYS_ADMIN]}
"#;
    let baseline: Vec<&str> = CHECKS
        .iter()
        .filter(|(_, p, _)| *p == Profile::Baseline)
        .map(|(n, _, _)| *n)
        .collect();
    assert_eq!(names(&failing(bad, Profile::Baseline)), baseline);
    assert_eq!(names(&failing(bad, Profile::Restricted)).len(), CHECKS.len());
    let good = "kind: DaemonSet\nspec:\n  template:\n    spec:\n      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}\n      volumes: [{name: c, configMap: {name: x}}]\n      containers:\n        - name: a\n          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert!(failing(good, Profile::Restricted).is_empty());
}

/// What Kustomize and the chart render fails baseline on hostPath volumes and the two
/// capabilities, and nothing else; the chart's confinement values stay within baseline
/// (AppArmor `Localhost`) or say where they leave it (SELinux `spc_t`).
#[test]
fn the_daemonset_fails_baseline_only_for_hostpath_and_two_capabilities() {
    let test = "pod security";
    let Some(helmed) = helm_template(&[], test) else {
        return;
    };
    for (what, rendered) in [("kustomize", kustomize("deploy/base")), ("helm", helmed)] {
        let f = failing(&rendered, Profile::Baseline);
        assert_eq!(
            names(&f),
            vec!["Capabilities", "HostPath Volumes"],
            "{what}: {f:?}"
        );
        let caps: BTreeSet<&str> = f[0].1.iter().map(String::as_str).collect();
        assert_eq!(caps, BTreeSet::from(["SYS_PTRACE", "DAC_READ_SEARCH"]), "{what}");
        // Restricted adds what a root reader of host files must be: uid 0, hostPath.
        let r = failing(&rendered, Profile::Restricted);
        assert_eq!(
            names(&r),
            vec![
                "Capabilities",
                "HostPath Volumes",
                "Volume Types",
                "Running as Non-root",
                "Running as Non-root user",
                "Capabilities (restricted)"
            ],
            "{what}: {r:?}"
        );
    }
    // The Namespace Kustomize ships says so.
    let docs = yaml_docs(&kustomize("deploy/base"));
    let ns = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "{ns:#}"
    );
    // The chart's confinement values.
    let confined = helm_template(
        &[
            "--set",
            "appArmorProfile.type=Localhost",
            "--set",
            "appArmorProfile.localhostProfile=stalewatch",
            "--kube-version",
            "1.30.0",
        ],
        test,
    )
    .unwrap();
    let docs = yaml_docs(&confined);
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let sc = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["appArmorProfile"]["localhostProfile"], "stalewatch", "{sc:#}");
    assert_eq!(
        names(&failing(&confined, Profile::Baseline)),
        vec!["Capabilities", "HostPath Volumes"]
    );
    // Before 1.30 the annotation carries it.
    let older = helm_template(
        &[
            "--set",
            "appArmorProfile.type=Localhost",
            "--set",
            "appArmorProfile.localhostProfile=stalewatch",
            "--kube-version",
            "1.29.0",
        ],
        test,
    )
    .unwrap();
    let docs = yaml_docs(&older);
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]
            ["container.apparmor.security.beta.kubernetes.io/agent"],
        "localhost/stalewatch"
    );
    assert!(ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        .get("appArmorProfile")
        .is_none());
    let spc = helm_template(&["--set", "seLinuxOptions.type=spc_t"], test).unwrap();
    assert_eq!(
        names(&failing(&spc, Profile::Baseline)),
        vec!["Capabilities", "HostPath Volumes", "SELinux"]
    );
}

/// kubernetes-validate (strict, its newest schemas) on a rendered stream: the DaemonSet passes.
fn valid_kubernetes(what: &str, rendered: &str) {
    let text = kubernetes_validate(what, rendered);
    assert!(
        text.contains("passed for resource daemonset/stalewatch"),
        "{what}:\n{text}"
    );
}

/// The Kustomize confinement examples: valid Kubernetes, the field set on the agent, AppArmor
/// within baseline, SELinux's `spc_t` outside it (as the docs say).
#[test]
fn the_kustomize_confinement_components_set_what_the_docs_say() {
    let test = "pod security: components";
    if !require("kubernetes-validate", test) || !require("kubectl", test) {
        return;
    }
    let apparmor = kustomize_with_component("apparmor");
    let docs = yaml_docs(&apparmor);
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["appArmorProfile"],
        serde_json::json!({"type": "RuntimeDefault"})
    );
    assert_eq!(
        names(&failing(&apparmor, Profile::Baseline)),
        vec!["Capabilities", "HostPath Volumes"]
    );
    valid_kubernetes("apparmor", &apparmor);
    let selinux = kustomize_with_component("selinux");
    assert_eq!(
        names(&failing(&selinux, Profile::Baseline)),
        vec!["Capabilities", "HostPath Volumes", "SELinux"]
    );
    valid_kubernetes("selinux", &selinux);
    // And the chart's values, rendered for 1.30.
    let Some(chart) = helm_template(
        &[
            "--set",
            "appArmorProfile.type=RuntimeDefault",
            "--set",
            "seLinuxOptions.type=spc_t",
            "--kube-version",
            "1.30.0",
        ],
        test,
    ) else {
        return;
    };
    valid_kubernetes("chart", &chart);
}
