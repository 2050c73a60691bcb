//! Making a change the way a user would: in file mode by writing a manifest (write to a
//! temporary name, then rename into place); in kube mode by an HTTP create or replace on
//! the fake API server, as `kubectl` would.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{http1::Client, objects};
use crate::bench::rig::write_atomic;

enum Via {
    Files(PathBuf),
    Api(Client),
}

/// Applies changes and remembers each probe's current backend.
pub struct Changer {
    via: Via,
    backends: Vec<SocketAddr>,
}

impl Changer {
    /// Writes into the manifest directory `dir`; probe `k` starts at `backends[k]`.
    pub fn files(dir: &Path, backends: Vec<SocketAddr>) -> Self {
        Self {
            via: Via::Files(dir.to_owned()),
            backends,
        }
    }

    /// Writes through the API server at `api`; probe `k` starts at `backends[k]`.
    pub fn api(api: SocketAddr, backends: Vec<SocketAddr>) -> Self {
        Self {
            via: Via::Api(Client::new(api)),
            backends,
        }
    }

    /// Creates added Ingress `j`.
    pub fn add_ingress(&mut self, j: usize) -> anyhow::Result<()> {
        let obj = objects::added_ingress(j);
        match &mut self.via {
            Via::Files(dir) => {
                write_atomic(&dir.join(format!("added-{j}.yaml")), &objects::yaml(&[obj]))?;
            }
            Via::Api(c) => {
                let path = format!(
                    "/apis/networking.k8s.io/v1/namespaces/{}/ingresses",
                    objects::NS
                );
                send(c, "POST", &path, &obj)?;
            }
        }
        Ok(())
    }

    /// Moves probe `k`'s only endpoint to `backend`.
    pub fn move_probe(&mut self, k: usize, backend: SocketAddr) -> anyhow::Result<()> {
        self.backends[k] = backend;
        match &mut self.via {
            Via::Files(dir) => objects::write_probe_slices(dir, k, &self.backends)?,
            Via::Api(c) => {
                let path = format!(
                    "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices/probe-{k}",
                    objects::NS
                );
                send(c, "PUT", &path, &objects::probe_slice(k, backend))?;
            }
        }
        Ok(())
    }
}

fn send(c: &mut Client, method: &str, path: &str, obj: &serde_json::Value) -> anyhow::Result<()> {
    let body = serde_json::to_vec(obj)?;
    let resp = c
        .request(method, path, "kubernetes", Some(&body))
        .with_context(|| format!("{method} {path}"))?;
    if !(200..300).contains(&resp.status) {
        bail!(
            "{method} {path}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    Ok(())
}
