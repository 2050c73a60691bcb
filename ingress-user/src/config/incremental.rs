//! The controller's translation: [`Change`]s in, Snapshots out, each change costing what
//! depends on it rather than what the cluster holds.
//!
//! What each kind of change touches:
//! - **EndpointSlice**: the endpoint cells of its Service (one atomic store each; HTTP
//!   Backends share them, so no route is rebuilt) and the L4 table.
//! - **Ingress**: that Ingress is translated again, and only the hosts it claimed before
//!   or claims now are merged again (oldest first); then the `server-alias`es (few). TLS is merged again only when its
//!   `tls` entries changed; the default backend always (a handful of Ingresses).
//! - **Service**: the Ingresses that name it are translated again; its cells, the L4 table
//!   and `--default-backend-service` are recomputed.
//! - **Secret**: the TLS merge (parsed certificates are cached per Secret object), and the
//!   Ingresses whose annotations name it (`auth-secret`, `proxy-ssl-secret`,
//!   `auth-tls-secret`) are translated again.
//! - **ConfigMap**: the L4 table, the Ingresses whose `custom-headers` name it are
//!   translated again, and, while any GatewayClass exists, the Gateway API translation (a
//!   ConfigMap entry wins a TCP/UDP listener's port). **IngressClass**: which Ingresses are
//!   served, so all.
//! - **Gateway API objects and Namespaces**: the whole Gateway API translation
//!   ([`gateway::translate`]; Gateways and routes are few), the L4 table (TCPRoutes and
//!   UDPRoutes are planned there and resolved with the ConfigMap entries, so an endpoint
//!   change re-resolves them without translating Gateways again), and, when it shares the
//!   Ingress sockets, the check for Ingress hosts it shadows. While any GatewayClass
//!   exists, Service and Secret changes redo it too (backendRefs and certificateRefs).
//!
//! [`build_objects`](super::build_objects) stays the reference; the property test at the
//! bottom applies random change sequences and compares after every step.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use super::{
    L4Service, Options, Problem, Snapshot,
    backend::{Cells, Resolver},
    class::ClassFilter,
    gateway::{self, l4routes::L4Plan, status::Statuses},
    ingress::{self, Age, SecretCache, Translated},
    l4,
    store::{Applied, Change, Key, Kind, Objects},
};
use crate::snapshot::{
    certs::CertSet,
    gateway::GatewayPlane,
    routes::{HostMatch, RouteTable},
};

/// The incremental translation state (see the module docs).
#[derive(Default)]
pub struct Engine {
    opts: Options,
    objects: Objects,
    cells: Cells,
    secrets: SecretCache,
    /// Served Ingresses, translated.
    served: HashMap<Key, Translated>,
    /// Own Problems of served Ingresses that have any.
    ingress_problems: BTreeMap<Key, Vec<Problem>>,
    /// Served Ingresses with `tls` entries, oldest first.
    with_tls: BTreeSet<Age>,
    /// Served Ingresses with a `defaultBackend`, oldest first.
    with_default: BTreeSet<Age>,
    /// Served Ingresses with `server-alias`, oldest first.
    with_alias: BTreeSet<Age>,
    alias_problems: Vec<Problem>,
    /// The Ingresses claiming paths of each host, oldest first (sorted Vecs: most hosts
    /// have one claimant, and a B-tree node would cost a KiB each).
    claims: HashMap<HostMatch, Vec<Age>>,
    /// Path conflicts of each host that has any.
    conflicts: HashMap<HostMatch, Vec<Problem>>,
    /// The served Ingresses naming each Service.
    users: HashMap<Key, Vec<Key>>,
    /// The served Ingresses whose annotations name each Secret.
    secret_users: HashMap<Key, Vec<Key>>,
    /// The served Ingresses reading each ConfigMap (`custom-headers`).
    config_map_users: HashMap<Key, Vec<Key>>,
    table: RouteTable,
    certs: Arc<CertSet>,
    tls_problems: Vec<Problem>,
    default_problems: Vec<Problem>,
    l4: Vec<L4Service>,
    l4_problems: Vec<Problem>,
    gateway: Arc<GatewayPlane>,
    gateway_problems: Vec<Problem>,
    /// TCP/UDP listeners with their routes: resolved into `l4` with the ConfigMap entries.
    gateway_l4: Vec<L4Plan>,
    /// Ingress hosts a Gateway serves instead.
    shadowed: Vec<Problem>,
    statuses: Arc<Statuses>,
    dirty: Dirty,
}

/// What the next [`Engine::snapshot`] must redo.
#[derive(Default)]
struct Dirty {
    ingresses: BTreeSet<Key>,
    all_ingresses: bool,
    hosts: HashSet<HostMatch>,
    tls: bool,
    default: bool,
    l4: bool,
    /// The Gateway API translation.
    gateway: bool,
    /// Anything at all since the last Snapshot (including endpoint cells).
    any: bool,
}

/// How much work a [`Engine::snapshot`] did, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Ingresses translated again.
    pub ingresses: usize,
    /// Hosts merged again.
    pub hosts: usize,
}

impl Engine {
    /// An empty engine (the Snapshot of no objects).
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            dirty: Dirty {
                default: true,
                l4: true,
                any: true,
                ..Dirty::default()
            },
            ..Self::default()
        }
    }

    /// The objects applied so far.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Applies one change; `false` if it changed nothing. Endpoint changes reach the HTTP
    /// Backends of the current Snapshot at once; the rest waits for [`Self::snapshot`].
    pub fn apply(&mut self, change: Change) -> bool {
        let applied = self.objects.apply(change);
        let resolver = Resolver::new(&self.objects);
        match applied {
            Applied::Nothing => return false,
            Applied::Problems => {}
            Applied::Object(Kind::Ingress, key, _) => {
                self.dirty.ingresses.insert(key);
            }
            Applied::Object(Kind::IngressClass, ..) => self.dirty.all_ingresses = true,
            Applied::Object(
                Kind::Namespace
                | Kind::GatewayClass
                | Kind::Gateway
                | Kind::HTTPRoute
                | Kind::TCPRoute
                | Kind::UDPRoute
                | Kind::TLSRoute
                | Kind::ReferenceGrant,
                ..,
            ) => self.dirty.gateway = true,
            Applied::Object(Kind::Service, key, _) => {
                self.dirty.gateway |= self.has_gateway_api();
                if let Some(users) = self.users.get(&key) {
                    self.dirty.ingresses.extend(users.iter().cloned());
                }
                self.cells.refresh(resolver, &key.0, &key.1);
                self.dirty.default = true;
                self.dirty.l4 = true;
            }
            Applied::Object(Kind::EndpointSlice, _, services) => {
                for (ns, name) in &services {
                    self.cells.refresh(resolver, ns, name);
                }
                self.dirty.l4 = true;
            }
            Applied::Object(Kind::Secret, key, _) => {
                if let Some(users) = self.secret_users.get(&key) {
                    self.dirty.ingresses.extend(users.iter().cloned());
                }
                self.dirty.tls = true;
                self.dirty.gateway |= self.has_gateway_api();
            }
            Applied::Object(Kind::ConfigMap, key, _) => {
                if let Some(users) = self.config_map_users.get(&key) {
                    self.dirty.ingresses.extend(users.iter().cloned());
                }
                self.dirty.l4 = true;
                // A ConfigMap entry wins a TCP/UDP listener's port.
                self.dirty.gateway |= self.has_gateway_api();
            }
        }
        self.dirty.any = true;
        true
    }

    /// Whether any Gateway API object is known (then Services and Secrets matter to it).
    fn has_gateway_api(&self) -> bool {
        !self.objects.gateway_classes.is_empty()
    }

    /// The Gateway API status of the last [`Self::snapshot`].
    pub fn statuses(&self) -> &Arc<Statuses> {
        &self.statuses
    }

    /// Whether anything changed since the last [`Self::snapshot`].
    pub fn changed(&self) -> bool {
        self.dirty.any
    }

    /// The Snapshot of everything applied, redoing only what the changes touched.
    pub fn snapshot(&mut self) -> (Snapshot, Work) {
        let mut work = Work::default();
        let dirty = std::mem::take(&mut self.dirty);
        let mut ingresses = dirty.ingresses;
        if dirty.all_ingresses {
            ingresses.extend(self.objects.ingresses.keys().cloned());
            ingresses.extend(self.served.keys().cloned());
        }
        let mut hosts = dirty.hosts;
        let mut redo_tls = dirty.tls;
        let redo_default = dirty.default || !ingresses.is_empty();
        {
            let opts = self.opts.clone();
            let classes =
                ClassFilter::new(self.objects.ingress_classes.values().map(|c| &**c), &opts);
            for key in &ingresses {
                work.ingresses += 1;
                redo_tls |= self.retranslate(key, &classes, &mut hosts);
            }
        }
        for host in &hosts {
            work.hosts += 1;
            self.merge_host(host);
        }
        if !ingresses.is_empty() || !hosts.is_empty() {
            self.merge_aliases();
        }
        if redo_tls {
            self.merge_tls();
        }
        if redo_default {
            self.merge_default();
        }
        if dirty.gateway {
            let t = gateway::translate(
                &self.objects,
                &self.opts,
                &mut self.cells,
                &mut self.secrets,
            );
            self.gateway = Arc::new(t.plane);
            self.gateway_problems = t.problems;
            self.statuses = Arc::new(t.statuses);
            self.gateway_l4 = t.l4;
        }
        if dirty.l4 || dirty.gateway {
            let resolver = Resolver::new(&self.objects);
            let mut problems = Vec::new();
            self.l4 = l4::table(&self.objects, &self.opts, resolver, &mut problems);
            l4::add_gateway(&mut self.l4, &self.gateway_l4, resolver);
            self.l4_problems = problems;
        }
        if dirty.gateway || !hosts.is_empty() {
            self.shadowed = gateway::shadowed(&self.table, &self.gateway, &self.opts);
        }
        if !ingresses.is_empty() || dirty.gateway {
            self.cells.prune();
        }
        let snapshot = Snapshot {
            http: self.table.clone(),
            l4: self.l4.clone(),
            tls: self.certs.clone(),
            gateway: self.gateway.clone(),
            problems: self.problems(),
        };
        (snapshot, work)
    }

    /// Drops an Ingress's old translation and adds its new one (if served). Marks the hosts
    /// to merge again; `true` if its TLS entries changed.
    fn retranslate(
        &mut self,
        key: &Key,
        classes: &ClassFilter<'_>,
        hosts: &mut HashSet<HostMatch>,
    ) -> bool {
        let old = self.served.remove(key);
        if let Some(old) = &old {
            self.unindex(old, hosts);
        }
        let new = self
            .objects
            .ingresses
            .get(key)
            .filter(|i| classes.serves(i))
            .map(|i| {
                ingress::translate(i, Resolver::new(&self.objects), &mut self.cells, &self.opts)
            });
        let tls_changed = match (&old, &new) {
            (Some(o), Some(n)) => o.tls != n.tls || o.age != n.age,
            (None, None) => false,
            (Some(t), None) | (None, Some(t)) => !t.tls.is_empty(),
        };
        if let Some(new) = new {
            self.index(&new, hosts);
            self.served.insert(key.clone(), new);
        }
        tls_changed
    }

    fn unindex(&mut self, t: &Translated, hosts: &mut HashSet<HostMatch>) {
        let key = &t.age.key;
        for (host, _) in &t.hosts {
            if let Some(claims) = self.claims.get_mut(host)
                && let Ok(i) = claims.binary_search(&t.age)
            {
                claims.remove(i);
            }
            hosts.insert(host.clone());
        }
        self.with_tls.remove(&t.age);
        self.with_default.remove(&t.age);
        self.with_alias.remove(&t.age);
        self.ingress_problems.remove(key);
        for (index, keys) in [
            (&mut self.users, &t.services),
            (&mut self.secret_users, &t.secrets),
            (&mut self.config_map_users, &t.config_maps),
        ] {
            for used in keys {
                if let Some(users) = index.get_mut(used) {
                    users.retain(|u| u != key);
                    if users.is_empty() {
                        index.remove(used);
                    }
                }
            }
        }
    }

    fn index(&mut self, t: &Translated, hosts: &mut HashSet<HostMatch>) {
        let key = &t.age.key;
        for (host, _) in &t.hosts {
            let claims = self.claims.entry(host.clone()).or_default();
            if let Err(i) = claims.binary_search(&t.age) {
                claims.insert(i, t.age.clone());
            }
            hosts.insert(host.clone());
        }
        if !t.tls.is_empty() {
            self.with_tls.insert(t.age.clone());
        }
        if t.default_backend.is_some() {
            self.with_default.insert(t.age.clone());
        }
        if !t.aliases.is_empty() {
            self.with_alias.insert(t.age.clone());
        }
        if !t.problems.is_empty() {
            self.ingress_problems
                .insert(key.clone(), t.problems.clone());
        }
        for (index, keys) in [
            (&mut self.users, &t.services),
            (&mut self.secret_users, &t.secrets),
            (&mut self.config_map_users, &t.config_maps),
        ] {
            for used in keys {
                let users = index.entry(used.clone()).or_default();
                if !users.contains(key) {
                    users.push(key.clone());
                }
            }
        }
    }

    fn merge_host(&mut self, host: &HostMatch) {
        let claims = self
            .claims
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|age| {
                let t = self.served.get(&age.key)?;
                let paths = t.hosts.iter().find(|(h, _)| h == host)?;
                Some((&t.object, paths.1.as_slice()))
            });
        let (routes, conflicts) = ingress::merge_host(host, claims);
        // Not `routes.is_empty()`: a canary's paths claim a host without routing it, and
        // must be there when its main Ingress arrives.
        if self.claims.get(host).is_some_and(Vec::is_empty) {
            self.claims.remove(host);
        }
        self.table.set_host(host, routes);
        if conflicts.is_empty() {
            self.conflicts.remove(host);
        } else {
            self.conflicts.insert(host.clone(), conflicts);
        }
    }

    fn merge_aliases(&mut self) {
        let ingresses = self
            .with_alias
            .iter()
            .filter_map(|a| self.served.get(&a.key));
        let (aliases, problems) =
            super::alias::merge(ingresses, &self.table, &self.opts.annotations_prefix);
        self.table.set_aliases(aliases);
        self.alias_problems = problems;
    }

    fn merge_tls(&mut self) {
        let ingresses = self.with_tls.iter().filter_map(|a| self.served.get(&a.key));
        let merged = ingress::merge_tls(ingresses, &self.objects.secrets, &mut self.secrets);
        self.secrets.retain_existing(&self.objects.secrets);
        self.table.set_tls_hosts(merged.hosts);
        self.certs = Arc::new(merged.certs);
        self.tls_problems = merged.problems;
    }

    fn merge_default(&mut self) {
        let ingresses = self
            .with_default
            .iter()
            .filter_map(|a| self.served.get(&a.key));
        let (backend, mut problems) = ingress::merge_default(ingresses);
        let fallback = ingress::default_backend_service(
            Resolver::new(&self.objects),
            &mut self.cells,
            &self.opts,
            &mut problems,
        );
        self.table.set_default_backend(backend.or(fallback));
        self.default_problems = problems;
    }

    /// Every Problem, in the canonical order; proportional to the number of Problems.
    fn problems(&self) -> Vec<Problem> {
        let all = self
            .objects
            .problems
            .values()
            .chain(self.ingress_problems.values())
            .chain(self.conflicts.values())
            .flatten()
            .chain(&self.tls_problems)
            .chain(&self.default_problems)
            .chain(&self.alias_problems)
            .chain(&self.l4_problems)
            .chain(&self.gateway_problems)
            .chain(&self.shadowed)
            .cloned()
            .collect();
        super::sorted(all)
    }
}

#[cfg(test)]
mod tests;
