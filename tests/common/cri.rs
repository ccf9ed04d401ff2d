//! A minimal CRI v1 client (the messages of proto/cri-subset.proto, with CRI's field
//! numbers), to create pods and containers in the test containerd the way the kubelet does.

use std::collections::HashMap;
use tonic::codegen::http::uri::PathAndQuery;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(int32, tag = "1")]
    pub network: i32,
    #[prost(int32, tag = "2")]
    pub pid: i32,
    #[prost(int32, tag = "3")]
    pub ipc: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdResponse {
    #[prost(string, tag = "1")]
    pub id: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageResponse {
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

/// NamespaceMode NODE: host networking, as the lab has no CNI.
const NODE: i32 = 2;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
}

impl Cri {
    pub fn connect(sock: &std::path::Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(containerd_client::connect(sock))
            .expect("connect to the CRI socket");
        Cri { rt, channel }
    }

    fn call<Req: prost::Message + 'static, Resp: prost::Message + Default + 'static>(
        &self,
        method: &'static str,
        req: Req,
    ) -> Resp {
        let channel = self.channel.clone();
        self.rt.block_on(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("CRI channel ready");
            let path = PathAndQuery::from_static(method);
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .unwrap_or_else(|s| panic!("{method}: {s:?}"))
                .into_inner()
        })
    }

    /// The labels the kubelet puts on every pod sandbox and container it creates.
    fn kubelet_labels(namespace: &str, pod: &str, container: Option<&str>) -> HashMap<String, String> {
        let mut l = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), pod.to_string()),
            ("io.kubernetes.pod.namespace".to_string(), namespace.to_string()),
            ("io.kubernetes.pod.uid".to_string(), format!("uid-{pod}")),
        ]);
        if let Some(c) = container {
            l.insert("io.kubernetes.container.name".into(), c.into());
        }
        l
    }

    fn sandbox_config(namespace: &str, pod: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.into(),
                uid: format!("uid-{pod}"),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: String::new(),
            labels: Self::kubelet_labels(namespace, pod, None),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NODE,
                        pid: 1,
                        ipc: NODE,
                    }),
                }),
            }),
        }
    }

    /// RunPodSandbox, then CreateContainer + StartContainer running `sleep` from `image`.
    /// Returns (sandbox id, container id).
    pub fn run_pod(&self, namespace: &str, pod: &str, container: &str, image: &str) -> (String, String) {
        let config = Self::sandbox_config(namespace, pod);
        let sandbox: IdResponse = self.call(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            },
        );
        let created: IdResponse = self.call(
            "/runtime.v1.RuntimeService/CreateContainer",
            CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: container.into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec { image: image.into() }),
                    command: vec!["/bin/sleep".into()],
                    args: vec!["3600".into()],
                    labels: Self::kubelet_labels(namespace, pod, Some(container)),
                }),
                sandbox_config: Some(config),
            },
        );
        let _: Empty = self.call(
            "/runtime.v1.RuntimeService/StartContainer",
            IdRequest {
                id: created.id.clone(),
            },
        );
        (sandbox.id, created.id)
    }

    /// PullImage, as the kubelet asks for an image: the CRI plugin pulls and unpacks it (and,
    /// with `discard_unpacked_layers`, drops its layer blobs). Returns the image's reference.
    pub fn pull_image(&self, image: &str) -> String {
        let resp: PullImageResponse = self.call(
            "/runtime.v1.ImageService/PullImage",
            PullImageRequest {
                image: Some(ImageSpec { image: image.into() }),
            },
        );
        resp.image_ref
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
    pub fn remove_pod(&self, sandbox: &str, container: &str) {
        let _: Empty = self.call(
            "/runtime.v1.RuntimeService/StopContainer",
            StopContainerRequest {
                container_id: container.into(),
                timeout: 0,
            },
        );
        let _: Empty = self.call(
            "/runtime.v1.RuntimeService/RemoveContainer",
            IdRequest { id: container.into() },
        );
        let _: Empty = self.call(
            "/runtime.v1.RuntimeService/StopPodSandbox",
            IdRequest { id: sandbox.into() },
        );
        let _: Empty = self.call(
            "/runtime.v1.RuntimeService/RemovePodSandbox",
            IdRequest { id: sandbox.into() },
        );
    }
}
