//! A real Kubernetes control plane on loopback for a test: etcd, kube-apiserver (RBAC, static
//! admin token, service-account tokens) and kube-controller-manager (which issues the service
//! accounts' tokens). The binaries are built by `scripts/kube-build.sh apiserver` from Debian's
//! source package into `$STALEWATCH_KUBE_LAB` (default `/var/cache/kube-lab`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct KubeLab {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    kcm: Option<Child>,
    pub api_port: u16,
    apiserver_args: Vec<String>,
    /// kubeconfig of `system:masters`.
    pub admin: PathBuf,
}

const ADMIN_TOKEN: &str = "stalewatch-test-admin-token";
const KCM_TOKEN: &str = "stalewatch-test-kcm-token";

use super::agent::free_port;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lab_root() -> PathBuf {
    std::env::var_os("STALEWATCH_KUBE_LAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kube-lab"))
}

/// Writes a kubeconfig for `server` with a bearer token.
pub fn kubeconfig(path: &Path, port: u16, ca: &Path, token: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: u}}\ncurrent-context: lab\n",
            ca.display()
        ),
    )
    .unwrap();
}

impl KubeLab {
    /// Starts the control plane; `None` (loudly) when the binaries are not built, a panic
    /// under `CI=true`.
    #[allow(clippy::too_many_lines)] // the control plane's start, one step after another (certificates, etcd, apiserver, RBAC)
    pub fn start(test: &str) -> Option<KubeLab> {
        let root = lab_root();
        let (apiserver, kcm, etcd) = (
            root.join("bin/kube-apiserver"),
            root.join("bin/kube-controller-manager"),
            root.join("root/usr/bin/etcd"),
        );
        let built = apiserver.is_file() && kcm.is_file() && etcd.is_file();
        if !super::require("kubectl", test) {
            return None;
        }
        if !built {
            let why = format!(
                "no control plane under {} (run scripts/kube-build.sh apiserver)",
                root.display()
            );
            super::not_run(test, &why);
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ssl = |args: &[&str]| {
            run(Command::new("openssl").args(args).current_dir(d));
        };
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=stalewatch-test-ca",
        ]);
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        ssl(&[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        ssl(&["genrsa", "-out", "sa.key", "2048"]);
        ssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        std::fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n{KCM_TOKEN},system:kube-controller-manager,kcm-uid,\"system:masters\"\n"),
        )
        .unwrap();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let etcd = Command::new(etcd)
            .args(["--name", "lab", "--data-dir"])
            .arg(d.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!("--initial-cluster=lab=http://127.0.0.1:{peer_port}"))
            .arg("--listen-metrics-urls=")
            .stdout(log("etcd.log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start etcd");
        let p = |f: &str| d.join(f).display().to_string();
        let apiserver_args = vec![
            apiserver.display().to_string(),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--insecure-port=0".into(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--api-audiences=https://kubernetes.default.svc".into(),
            // Never a private range on these machines (198.18.0.0/15 is the benchmarking block).
            "--service-cluster-ip-range=198.19.0.0/24".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", d.display()),
        ];
        let admin = d.join("admin.kubeconfig");
        kubeconfig(&admin, api_port, &d.join("ca.crt"), ADMIN_TOKEN);
        let kcm_config = d.join("kcm.kubeconfig");
        kubeconfig(&kcm_config, api_port, &d.join("ca.crt"), KCM_TOKEN);
        let mut lab = KubeLab {
            etcd: Some(etcd),
            apiserver: None,
            kcm: None,
            api_port,
            apiserver_args,
            admin,
            dir,
        };
        lab.start_apiserver();
        let d = lab.dir.path();
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        lab.kcm = Some(
            Command::new(kcm)
                .arg(format!("--kubeconfig={}", kcm_config.display()))
                .args(["--bind-address=127.0.0.1", "--secure-port=0", "--port=0"])
                .arg("--controllers=serviceaccount,serviceaccount-token,namespace,garbagecollector")
                .arg(format!(
                    "--service-account-private-key-file={}",
                    d.join("sa.key").display()
                ))
                .arg(format!("--root-ca-file={}", d.join("ca.crt").display()))
                .args(["--use-service-account-credentials=false", "--leader-elect=false"])
                .stdout(log("kcm.log"))
                .stderr(std::fs::File::create(d.join("kcm.err")).unwrap())
                .spawn()
                .expect("start kube-controller-manager"),
        );
        Some(lab)
    }

    /// Starts (or restarts) kube-apiserver and waits until it is ready.
    pub fn start_apiserver(&mut self) {
        let d = self.dir.path();
        let child = Command::new(&self.apiserver_args[0])
            .args(&self.apiserver_args[1..])
            .stdout(std::fs::File::create(d.join("apiserver.log")).unwrap())
            .stderr(std::fs::File::create(d.join("apiserver.err")).unwrap())
            .spawn()
            .expect("start kube-apiserver");
        self.apiserver = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // A port lost to another process between `free_port` and the bind ends the
            // apiserver at once: say so rather than talk to whatever holds the port.
            if let Some(Ok(Some(status))) = self.apiserver.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "kube-apiserver exited ({status}) on port {}: {}",
                    self.api_port,
                    std::fs::read_to_string(d.join("apiserver.err")).unwrap_or_default()
                );
            }
            if self
                .kubectl_unchecked(&["get", "--raw", "/readyz"])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "kube-apiserver not ready: {}",
            std::fs::read_to_string(d.join("apiserver.err")).unwrap_or_default()
        );
    }

    /// Stops kube-apiserver (the API becomes unreachable).
    pub fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn kubectl_unchecked(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl as admin; panics on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_unchecked(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, manifest: &str) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The token the controller-manager issued to a service account (its token Secret).
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = self.kubectl_unchecked(&[
                "-n",
                namespace,
                "get",
                "secrets",
                "-o",
                &format!("jsonpath={{range .items[?(@.metadata.annotations.kubernetes\\.io/service-account\\.name==\"{name}\")]}}{{.data.token}}{{\"\\n\"}}{{end}}"),
            ]);
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(b64) = text.lines().find(|l| !l.trim().is_empty()) {
                let out = run(Command::new("base64").arg("-d").stdin({
                    let f = self.dir.path().join("token.b64");
                    std::fs::write(&f, b64.trim()).unwrap();
                    std::fs::File::open(f).unwrap()
                }));
                return String::from_utf8(out.stdout).unwrap();
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("no token issued for service account {namespace}/{name}");
    }

    /// The agent's namespace, ServiceAccount and RBAC of `deploy/base` applied as they are; a
    /// kubeconfig that authenticates as that ServiceAccount.
    pub fn agent_kubeconfig(&self) -> PathBuf {
        let base = super::project().join("deploy/base");
        let f = |n: &str| base.join(n).display().to_string();
        self.kubectl(&[
            "apply",
            "-f",
            &f("namespace.yaml"),
            "-f",
            &f("serviceaccount.yaml"),
            "-f",
            &f("rbac.yaml"),
        ]);
        self.service_account_kubeconfig("stalewatch", "stalewatch")
    }

    /// A kubeconfig that authenticates as a service account.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.service_account_token(namespace, name);
        let path = self.dir.path().join(format!("{namespace}-{name}.kubeconfig"));
        kubeconfig(&path, self.api_port, &self.ca(), &token);
        path
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        for c in [self.kcm.take(), self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
