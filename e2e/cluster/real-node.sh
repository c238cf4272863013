# shellcheck shell=bash
# The real node of e2e/cluster/cluster (`up --real-node`): containerd + runc, kubelet, the CNI
# bridge, kube-proxy, CoreDNS, a local-volume provisioner and a NetworkPolicy enforcer, all built
# from pinned Go modules, all inside a network namespace this script creates: pod and service
# addresses exist only in there, and nothing in it has a route out. Sourced by `cluster`.

# Addresses inside the namespace. NODE_IP is the node's address (kubelet, apiserver endpoint);
# pods get POD_SUBNET on the cni0 bridge; services SERVICE_CIDR (kube-dns at DNS_IP).
NODE_IP=10.200.0.1
NODE_NAME=verity-node
POD_SUBNET=10.244.0.0/24
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
NODE_COMPONENTS=(containerd kubelet kube-proxy local-path-provisioner kube-router)
NODE_GO_COMPONENTS=(kubernetes-node containerd runc cni umoci coredns local-path kube-router)

# One namespace per state dir, so that two checkouts do not share one.
netns_name() { echo "verity-$(printf %s "$STATE" | sha256sum | cut -c1-8)"; }
NETNS=$(netns_name)

real_node_enabled() { [[ -f $STATE/real-node ]]; }

# Runs a command inside the namespace (host mount namespace, so it sees no kubelet mounts).
in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

netns_create() {
    command -v nsenter >/dev/null && command -v unshare >/dev/null || die "nsenter and unshare are needed (util-linux)"
    command -v ip >/dev/null || die "ip is needed (iproute2)"
    [[ $(id -u) == 0 ]] || die "the real node needs root (network namespace, cgroups, mounts)"
    if ! ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
        ip netns add "$NETNS" || die "cannot create network namespace $NETNS"
    fi
    # A veth pair with both ends inside carries the node address and the route to services
    # (this kernel has no dummy interfaces); there is no default route.
    in_netns sh -ec "
        ip link set lo up
        ip link show verity0 >/dev/null 2>&1 || ip link add verity0 type veth peer name verity1
        ip link set verity1 up
        ip addr replace $NODE_IP/32 dev verity0
        ip link set verity0 up
        ip route replace $SERVICE_CIDR dev verity0 src $NODE_IP
        echo 1 >/proc/sys/net/ipv4/ip_forward
        echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
        echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
    " || die "configuring network namespace $NETNS"
}

netns_delete() {
    if ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
        ip netns delete "$NETNS" && log "deleted network namespace $NETNS"
    fi
}

# The hierarchies the pods' cgroup root is made in: the top of a unified (v2-only) host, else
# every mounted hierarchy of a v1 or hybrid host (here: cpu, cpuacct, cpuset, memory, pids, …).
cgroup_hierarchies() {
    local d
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then echo /sys/fs/cgroup; return; fi
    for d in /sys/fs/cgroup/*; do
        [[ -f $d/cgroup.procs ]] && echo "$d" # (a hybrid host's v2 part, `unified`, included)
    done
    return 0
}

# Containers outlive containerd and kubelet (shims keep them): stop every process in the
# pods' cgroups and every shim of this cluster, then remove the cgroups.
CGROUP_ROOT_NAME=$NETNS
kill_pods() {
    local d pids pid round
    for round in 1 2 3; do
        pids=$(pgrep -f "containerd-shim-runc-v2 .*-address $STATE/node/containerd/" || true)
        for d in $(cgroup_hierarchies); do
            [[ -d $d/$CGROUP_ROOT_NAME ]] || continue
            pids+=" $(find "$d/$CGROUP_ROOT_NAME" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
        done
        pids=$(echo "$pids" | xargs -n1 2>/dev/null | sort -u | tr '\n' ' ')
        [[ -n ${pids// /} ]] || break
        for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
        sleep 0.5
    done
    for d in $(cgroup_hierarchies); do
        [[ -d $d/$CGROUP_ROOT_NAME ]] || continue
        find "$d/$CGROUP_ROOT_NAME" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

# The pods' cgroup parent, in every hierarchy (see cgroup_hierarchies).
make_cgroup_root() {
    local d
    for d in $(cgroup_hierarchies); do
        mkdir -p "$d/$CGROUP_ROOT_NAME"
        if [[ -f $d/cpuset.cpus && ! -f $d/cgroup.controllers ]]; then # a v1 cpuset child starts empty
            cat "$d/cpuset.cpus" >"$d/$CGROUP_ROOT_NAME/cpuset.cpus"
            cat "$d/cpuset.mems" >"$d/$CGROUP_ROOT_NAME/cpuset.mems"
        fi
    done
}

write_node_configs() {
    local p=$STATE/pki n=$STATE/node
    mkdir -p "$n"/{containerd,cni/net.d,cni/ipam,kubelet,local-path,volumes}
    cat >"$n/containerd/config.toml" <<EOF
version = 3
root = '$n/containerd/root'
state = '$n/containerd/state'
temp = '$n/containerd/tmp'

[grpc]
  address = '$n/containerd/containerd.sock'
[ttrpc]
  address = '$n/containerd/containerd.sock.ttrpc'
[debug]
  level = 'warn'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'docker.io/verity-test/pause:dev'
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # Lowering an OOM score needs CAP_SYS_RESOURCE, which test machines may not grant even to
    # root: containers get no lower score than containerd's own.
    restrict_oom_score_adj = true
    enable_unprivileged_ports = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(bin_dir runc)/runc'
        Root = '$n/containerd/runc'
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$(bin_dir cni)']
      conf_dir = '$n/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
EOF
    cat >"$n/cni/net.d/10-verity.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "verity",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$n/cni/ipam",
        "ranges": [[{ "subnet": "$POD_SUBNET", "gateway": "$POD_GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
    : >"$n/kubelet/resolv.conf"
    cat >"$n/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $(cat "$STATE/ports/kubelet")
healthzBindAddress: 127.0.0.1
healthzPort: $(cat "$STATE/ports/kubelet-healthz")
readOnlyPort: 0
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $p/ca.crt }
authorization: { mode: Webhook }
tlsCertFile: $p/kubelet.crt
tlsPrivateKeyFile: $p/kubelet.key
containerRuntimeEndpoint: unix://$n/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT_NAME
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $n/kubelet/resolv.conf
hairpinMode: hairpin-veth
serializeImagePulls: false
# A test machine's disk is shared with everything else: never evict or collect images for it.
evictionHard: { memory.available: 50Mi, nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
rotateCertificates: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
localStorageCapacityIsolation: true
shutdownGracePeriod: 0s
oomScoreAdj: 0
EOF
    cat >"$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $STATE/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
mode: nftables
clusterCIDR: 10.244.0.0/16
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$(cat "$STATE/ports/kube-proxy-healthz")
metricsBindAddress: 127.0.0.1:$(cat "$STATE/ports/kube-proxy-metrics")
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
conntrack: { maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
    cat >"$n/local-path/config.json" <<EOF
{ "nodePathMap": [{ "node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$n/volumes"] }] }
EOF
}

node_pki() { # the node's identities, added to the cluster CA (called inside make_pki's subshell)
    leaf node "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    leaf kubelet "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
    leaf kube-proxy "/CN=system:kube-proxy" clientAuth
    leaf local-path "/O=system:masters/CN=local-path-provisioner" clientAuth
    leaf kube-router "/O=system:masters/CN=kube-router" clientAuth
}

# Cluster add-ons that run as pods or need API objects: DNS, the default storage class, the
# provisioner's helper template.
addons_yaml() {
    cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: { name: coredns, namespace: kube-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: "system:coredns" }
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: "system:coredns" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns" }
subjects: [{ kind: ServiceAccount, name: coredns, namespace: kube-system }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: coredns, namespace: kube-system }
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: coredns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec:
  replicas: 1
  selector: { matchLabels: { k8s-app: kube-dns } }
  template:
    metadata: { labels: { k8s-app: kube-dns } }
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: { type: RuntimeDefault }
        sysctls: [{ name: net.ipv4.ip_unprivileged_port_start, value: "53" }]
      containers:
      - name: coredns
        image: verity-test/coredns:dev
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - { name: dns, containerPort: 53, protocol: UDP }
        - { name: dns-tcp, containerPort: 53, protocol: TCP }
        readinessProbe: { httpGet: { path: /ready, port: 8181 }, periodSeconds: 2 }
        livenessProbe: { httpGet: { path: /health, port: 8080 }, periodSeconds: 10 }
        resources: { requests: { cpu: 10m, memory: 32Mi }, limits: { memory: 128Mi } }
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: { drop: [ALL] }
        volumeMounts: [{ name: config, mountPath: /etc/coredns, readOnly: true }]
      volumes: [{ name: config, configMap: { name: coredns } }]
---
apiVersion: v1
kind: Service
metadata: { name: kube-dns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec:
  clusterIP: $DNS_IP
  selector: { k8s-app: kube-dns }
  ports:
  - { name: dns, port: 53, protocol: UDP, targetPort: 53 }
  - { name: dns-tcp, port: 53, protocol: TCP, targetPort: 53 }
---
apiVersion: v1
kind: Namespace
metadata: { name: local-path-storage }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: local-path-helper, namespace: local-path-storage }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: local-path-config, namespace: local-path-storage }
data:
  config.json: |
    { "nodePathMap": [{ "node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$STATE/node/volumes"] }] }
  setup: |
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
  helperPod.yaml: |
    apiVersion: v1
    kind: Pod
    metadata: { name: helper-pod }
    spec:
      priorityClassName: system-node-critical
      tolerations: [{ key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule }]
      containers:
      - name: helper-pod
        image: verity-test/busybox:dev
        imagePullPolicy: Never
        securityContext: { runAsUser: 0 }
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: { storageclass.kubernetes.io/is-default-class: "true" }
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
}

start_real_node() {
    local p=$STATE/pki n=$STATE/node kbin nbin
    kbin=$(bin_dir kubernetes-node)
    write_node_configs

    phase "containerd"
    # containerd finds its shim on PATH; CNI plugins and runc by configured paths.
    PATH="$(bin_dir containerd):$PATH" start containerd "$(bin_dir containerd)/containerd" --config "$n/containerd/config.toml"
    STARTED+=(containerd)
    wait_for "containerd socket" "$(bin_dir containerd)/ctr" --address "$n/containerd/containerd.sock" version

    phase "images"
    load_images

    phase "kubelet"
    make_cgroup_root
    start kubelet "$kbin/kubelet" --config="$n/kubelet/config.yaml" \
        --kubeconfig="$STATE/node.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
        --root-dir="$n/kubelet/root" --cert-dir="$n/kubelet/pki" \
        --node-labels="type=real,verity.dev/real-node=true" --v=1
    STARTED+=(kubelet)
    start kube-proxy "$kbin/kube-proxy" --config="$n/kube-proxy.yaml" --v=1
    STARTED+=(kube-proxy)
    wait_for "node $NODE_NAME Ready" real_node_ready

    phase "add-ons (dns, storage)"
    addons_yaml | "$KUBECTL" --kubeconfig="$STATE/admin.kubeconfig" apply -f - >/dev/null || fail "applying add-ons"
    start local-path-provisioner "$(bin_dir local-path)/local-path-provisioner" start \
        --kubeconfig="$STATE/local-path.kubeconfig" --config="$n/local-path/config.json" \
        --namespace=local-path-storage --service-account-name=local-path-helper \
        --configmap-name=local-path-config --helper-image=verity-test/busybox:dev
    STARTED+=(local-path-provisioner)
    # NetworkPolicies: kube-router's firewall alone (iptables + ipset in this namespace); its
    # router and service proxy stay off (the CNI bridge and kube-proxy do that).
    start kube-router "$(bin_dir kube-router)/kube-router" --kubeconfig="$STATE/kube-router.kubeconfig" \
        --hostname-override="$NODE_NAME" --run-firewall=true --run-router=false --run-service-proxy=false \
        --enable-cni=false --enable-ipv6=false --enable-ipv4=true --service-cluster-ip-range="$SERVICE_CIDR" \
        --health-port="$(cat "$STATE/ports/kube-router-health")" --metrics-port=0 --iptables-sync-period=1m --v=1
    STARTED+=(kube-router)
    wait_for "kube-router healthy" curl -sf --max-time 2 "http://127.0.0.1:$(cat "$STATE/ports/kube-router-health")/healthz"
    wait_for "CoreDNS ready" "$KUBECTL" --kubeconfig="$STATE/admin.kubeconfig" -n kube-system \
        wait --for=condition=Available deployment/coredns --timeout=2s
}

real_node_ready() {
    [[ $("$KUBECTL" --kubeconfig="$STATE/admin.kubeconfig" get node "$NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

load_images() {
    local f ctr
    ctr=$(bin_dir containerd)/ctr
    local dir=${VERITY_IMAGES_DIR:-$REPO_ROOT/e2e/.state/images} n=0
    # Built on the host side by cmd_up_real (cargo and the Go cache need it).
    for f in "$dir"/*.tar; do
        [[ -f $f ]] || continue
        n=$((n + 1))
        "$ctr" --address "$STATE/node/containerd/containerd.sock" -n k8s.io images import \
            --no-unpack=false --local "$f" >/dev/null || fail "importing $f into containerd"
    done
    ((n > 0)) || fail "no image archives in $dir (e2e/images/build makes them)"
    log "images: $("$ctr" --address "$STATE/node/containerd/containerd.sock" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}
