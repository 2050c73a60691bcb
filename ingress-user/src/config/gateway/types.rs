//! Typed Gateway API objects (`gateway.networking.k8s.io`), the fields we serve.
//!
//! Hand-written rather than the `gateway-api` crate, which pins another kube and
//! k8s-openapi. Unknown fields are ignored (newer API versions add them); a field of the
//! wrong type fails the object's deserialization with a message naming it. Defaults are
//! the spec's, applied by accessor methods so a missing field and its default read alike.

use std::collections::BTreeMap;

use k8s_openapi::{
    ClusterResourceScope, Metadata, NamespaceResourceScope, Resource,
    apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta},
};
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

macro_rules! resource {
    ($ty:ident, $version:literal, $plural:literal, $scope:ty $(, $status:ident)?) => {
        /// Written with `apiVersion` and `kind`, as the API server and kubectl expect.
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct as _;
                let mut st = s.serialize_struct(stringify!($ty), 5)?;
                st.serialize_field("apiVersion", <Self as Resource>::API_VERSION)?;
                st.serialize_field("kind", <Self as Resource>::KIND)?;
                st.serialize_field("metadata", &self.metadata)?;
                st.serialize_field("spec", &self.spec)?;
                $(if let Some(status) = &self.$status {
                    st.serialize_field("status", status)?;
                })?
                st.end()
            }
        }

        impl Resource for $ty {
            const API_VERSION: &'static str = concat!("gateway.networking.k8s.io/", $version);
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = stringify!($ty);
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = concat!(stringify!($ty), "List");
        }

        impl Metadata for $ty {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(
    GatewayClass,
    "v1",
    "gatewayclasses",
    ClusterResourceScope,
    status
);
resource!(Gateway, "v1", "gateways", NamespaceResourceScope, status);
resource!(
    HTTPRoute,
    "v1",
    "httproutes",
    NamespaceResourceScope,
    status
);
resource!(
    TCPRoute,
    "v1alpha2",
    "tcproutes",
    NamespaceResourceScope,
    status
);
resource!(
    UDPRoute,
    "v1alpha2",
    "udproutes",
    NamespaceResourceScope,
    status
);
resource!(TLSRoute, "v1", "tlsroutes", NamespaceResourceScope, status);
resource!(
    ReferenceGrant,
    "v1beta1",
    "referencegrants",
    NamespaceResourceScope
);

/// A route kind in another API version of the same shape. A cluster's CRDs decide which
/// versions the API server serves: TCPRoute and UDPRoute were v1alpha2 before Gateway API
/// v1.6 and are v1 since (the standard channel may serve only v1); TLSRoute is v1 since
/// v1.5 and v1alpha2 before. The kube source watches, and the status writer patches, the
/// version served; the object inside is the one translation reads.
macro_rules! other_version {
    ($wrapper:ident, $ty:ident, $version:literal, $plural:literal) => {
        #[doc = concat!("A [`", stringify!($ty), "`] read and written as `", $version, "`.")]
        #[derive(Clone, Debug, Default, PartialEq, Deserialize)]
        #[serde(transparent)]
        pub struct $wrapper(pub $ty);

        impl Resource for $wrapper {
            const API_VERSION: &'static str = concat!("gateway.networking.k8s.io/", $version);
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = stringify!($ty);
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = NamespaceResourceScope;
        }

        impl k8s_openapi::ListableResource for $wrapper {
            const LIST_KIND: &'static str = concat!(stringify!($ty), "List");
        }

        impl Metadata for $wrapper {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.0.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.0.metadata
            }
        }
    };
}

other_version!(TCPRouteV1, TCPRoute, "v1", "tcproutes");
other_version!(UDPRouteV1, UDPRoute, "v1", "udproutes");
other_version!(TLSRouteV1Alpha2, TLSRoute, "v1alpha2", "tlsroutes");

/// GatewayClass: which controller serves Gateways of this class.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct GatewayClass {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: GatewayClassSpec,
    /// Written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayClassStatus>,
}

/// GatewayClass spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// Ours when equal to `--controller-class`.
    #[serde(default)]
    pub controller_name: String,
}

/// GatewayClass status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayClassStatus {
    /// Accepted.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Gateway: listeners on addresses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Gateway {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: GatewaySpec,
    /// Written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// Gateway spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass.
    #[serde(default)]
    pub gateway_class_name: String,
    /// Listeners (1 to 64 in the CRD).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses; none means the node's (`--bind-address`).
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

/// A `spec.addresses` or `status.addresses` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAddress {
    /// `IPAddress` (the default), `Hostname` or a vendor type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The address.
    pub value: String,
}

/// A Gateway listener.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; a parentRef's `sectionName`.
    pub name: String,
    /// Requests (or SNI) must match this hostname; may be a `*.` wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port.
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    pub protocol: String,
    /// TLS settings (HTTPS, TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// A listener's TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (the default) or `Passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Secrets holding the certificate and key.
    #[serde(default)]
    pub certificate_refs: Vec<ObjectReference>,
}

/// A listener's `allowedRoutes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AllowedRoutes {
    /// From which namespaces (default: the Gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Which route kinds (default: those of the protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `allowedRoutes.namespaces`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A route kind (`supportedKinds`, `allowedRoutes.kinds`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteGroupKind {
    /// Default: `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// E.g. `HTTPRoute`.
    pub kind: String,
}

/// A reference to an object by group, kind, namespace and name (certificateRefs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReference {
    /// Default: core (`""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default: `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Default: the referring object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Gateway status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Where the Gateway serves.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    /// Accepted, Programmed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Per listener.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
}

/// One listener's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Route kinds it accepts.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// How many routes attached.
    pub attached_routes: i32,
    /// Accepted, Programmed, ResolvedRefs, Conflicted.
    pub conditions: Vec<Condition>,
}

/// HTTPRoute.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct HTTPRoute {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: HttpRouteSpec,
    /// Written by the controllers of its parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// HTTPRoute spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) to attach to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames to match; none means all the listener allows.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules (the CRD defaults an empty list to one rule matching `/` by prefix).
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// A parentRef.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Default: `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default: `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Default: the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway's name.
    pub name: String,
    /// A listener name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A listener port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// An HTTPRoute rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Any one of these must match; none means prefix `/`.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    /// Applied in order.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    /// Where matching requests go.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
}

/// An HTTPRouteMatch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Default: PathPrefix `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// All must match.
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
    /// All must match.
    #[serde(default)]
    pub query_params: Vec<HttpHeaderMatch>,
    /// E.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// An HTTPPathMatch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Default: `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// An HTTPHeaderMatch or HTTPQueryParamMatch (same shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpHeaderMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The header or parameter name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// An HTTPRouteFilter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// Which of the fields below applies.
    #[serde(rename = "type")]
    pub type_: String,
    /// RequestHeaderModifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderFilter>,
    /// ResponseHeaderModifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderFilter>,
    /// RequestMirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<MirrorFilter>,
    /// RequestRedirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RedirectFilter>,
    /// URLRewrite.
    #[serde(
        default,
        rename = "urlRewrite",
        skip_serializing_if = "Option::is_none"
    )]
    pub url_rewrite: Option<RewriteFilter>,
}

/// HTTPHeaderFilter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeaderFilter {
    /// Overwrite.
    #[serde(default)]
    pub set: Vec<HttpHeader>,
    /// Append.
    #[serde(default)]
    pub add: Vec<HttpHeader>,
    /// Remove by name.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// HTTPRequestMirrorFilter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorFilter {
    /// Where the copies go.
    #[serde(rename = "backendRef")]
    pub backend_ref: BackendRef,
    /// Share of requests, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Share of requests as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// A fraction (`denominator` defaults to 100).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    /// Numerator.
    pub numerator: i32,
    /// Denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<i32>,
}

/// HTTPRequestRedirectFilter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectFilter {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host in Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path in Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// Port in Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// 301 or 302 (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
}

/// HTTPURLRewriteFilter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RewriteFilter {
    /// Host sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// HTTPPathModifier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: String,
    /// With ReplaceFullPath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// With ReplacePrefixMatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// A BackendObjectReference (mirror) or the reference part of a backendRef.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRef {
    /// Default: core (`""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default: `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Default: the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port (required for Services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// An HTTPBackendRef.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpBackendRef {
    /// The reference.
    #[serde(flatten)]
    pub target: BackendRef,
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Applied after the rule's filters for requests sent here.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
}

/// TCPRoute: the connections to a TCP listener's port go to its backendRefs.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TCPRoute {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: L4RouteSpec,
    /// Written by the controllers of its parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// UDPRoute: the datagrams to a UDP listener's port go to its backendRefs.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UDPRoute {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: L4RouteSpec,
    /// Written by the controllers of its parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// TCPRoute and UDPRoute spec (the same shape in `v1alpha2` and `v1`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    /// The Gateways (and listeners) to attach to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Rules (1 to 16 in the CRD); their backendRefs share the listener's traffic.
    #[serde(default)]
    pub rules: Vec<L4RouteRule>,
}

/// A TCPRoute or UDPRoute rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteRule {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where connections go, by weight.
    #[serde(default)]
    pub backend_refs: Vec<WeightedBackendRef>,
}

/// A backendRef with a weight (the L4 routes' BackendRef).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedBackendRef {
    /// The reference.
    #[serde(flatten)]
    pub target: BackendRef,
    /// Default 1; 0 receives no new connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// TLSRoute (standard channel v1 since Gateway API v1.5; v1alpha2 and v1alpha3 have the
/// same shape and are read alike): TLS connections routed by SNI. We serve it on TLS
/// listeners in Passthrough mode only.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TLSRoute {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: TlsRouteSpec,
    /// Written by the controllers of its parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// TLSRoute spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteSpec {
    /// The Gateways (and listeners) to attach to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// SNI hostnames to match; none means all the listener allows.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules: only backendRefs (a TLSRoute has no match conditions besides hostnames).
    #[serde(default)]
    pub rules: Vec<TlsRouteRule>,
}

/// A TLSRoute rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRouteRule {
    /// Where matching connections go, by weight.
    #[serde(default)]
    pub backend_refs: Vec<WeightedBackendRef>,
}

/// A route's status (HTTPRoute and the L4 routes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// One entry per parentRef per controller.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// One parent's view of a route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef as written.
    pub parent_ref: ParentReference,
    /// Which controller wrote this entry.
    pub controller_name: String,
    /// Accepted, ResolvedRefs.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// ReferenceGrant: lets objects in `from` namespaces refer to objects in this one.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ReferenceGrant {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: ReferenceGrantSpec,
}

/// ReferenceGrant spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    /// To what (in the grant's namespace).
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `spec.from` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFrom {
    /// Group of the referring kind.
    #[serde(default)]
    pub group: String,
    /// Referring kind.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
}

/// `spec.to` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTo {
    /// Group of the referred kind (core: `""`).
    #[serde(default)]
    pub group: String,
    /// Referred kind.
    pub kind: String,
    /// One object, or all of the kind when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Labels of a Namespace, for `allowedRoutes.namespaces.selector`.
pub type Labels = BTreeMap<String, String>;
