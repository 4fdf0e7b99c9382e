# shellcheck shell=bash
# Loopback lab helpers shared by scripts/lab and the benchmarks: a Pebble CA with
# pebble-challtestsrv as its DNS (or, for DNS-01, BIND 9's named, authoritative for
# example.org with a TSIG key that may change TXT records only), a VIP and N nodes on 127.x
# addresses, each served by `vipcert serve`. Source this file; every process started is
# recorded in $LAB/pids and stopped by lab_stop.

LAB_PEBBLE_PORT=${LAB_PEBBLE_PORT:-14000}
LAB_DNS_PORT=${LAB_DNS_PORT:-8053}
LAB_CHALL_MGMT=${LAB_CHALL_MGMT:-8055}
LAB_HTTP_PORT=${LAB_HTTP_PORT:-5002}

lab_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Install what the lab needs on a fresh Debian machine (as root).
lab_need_packages() {
  local missing=()
  command -v pebble >/dev/null || missing+=(pebble)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [ -n "${LAB_NFS_CACHE:-}" ]; then command -v bindfs >/dev/null || missing+=(bindfs fuse3); fi
  if [ "${LAB_DNS01:-0}" = 1 ]; then
    command -v unshare >/dev/null || missing+=(util-linux)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v named >/dev/null || missing+=(bind9)
    command -v tsig-keygen >/dev/null || missing+=(bind9-utils)
    command -v dig >/dev/null || missing+=(bind9-dnsutils)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    lab_say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Run a command in the background, log to $LAB/<name>.log, remember its pid.
lab_bg() {
  local name=$1; shift
  "$@" >"$LAB/$name.log" 2>&1 &
  echo $! >>"$LAB/pids"
}

lab_wait_tcp() { # host port what
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "error: $3 did not start listening on $1:$2 (see $LAB/*.log)" >&2
  return 1
}

# Start challtestsrv and Pebble. Needs $LAB. PEBBLE_VA_NOSLEEP=1 unless LAB_SLEEP=1.
# LAB_PEBBLE_ENV: extra NAME=VALUE words for Pebble's environment (e.g. PEBBLE_AUTHZREUSE=0).
# With LAB_BIND (lab_bind_prepare ran) Pebble resolves through that named instead, and no
# challtestsrv is started.
lab_pebble_start() {
  mkdir -p "$LAB/pebble"
  local d=$LAB/pebble
  # rustls refuses a self-signed CA as a server certificate: a small CA and a leaf.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=vipcert lab CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$d/key.pem" -out "$d/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
    -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>/dev/null
  cat >"$d/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$LAB_PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$((LAB_PEBBLE_PORT + 1000))",
 "certificate": "$d/cert.pem", "privateKey": "$d/key.pem", "httpPort": $LAB_HTTP_PORT, "tlsPort": 5001,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  local dns=127.0.0.1:$LAB_DNS_PORT
  if [ -n "${LAB_BIND:-}" ]; then
    dns=$LAB_BIND_SERVER
  else
    lab_bg challtestsrv pebble-challtestsrv -dns01 "127.0.0.1:$LAB_DNS_PORT" -management "127.0.0.1:$LAB_CHALL_MGMT" \
      -defaultIPv6 "" -http01 "" -https01 "" -tlsalpn01 ""
    lab_wait_tcp 127.0.0.1 "$LAB_CHALL_MGMT" pebble-challtestsrv
  fi
  if [ "${LAB_SLEEP:-0}" = 1 ]; then
    # shellcheck disable=SC2086 # LAB_PEBBLE_ENV is a list of words
    lab_bg pebble env ${LAB_PEBBLE_ENV:-} pebble -config "$d/pebble.json" -dnsserver "$dns"
  else
    # shellcheck disable=SC2086
    lab_bg pebble env PEBBLE_VA_NOSLEEP=1 ${LAB_PEBBLE_ENV:-} pebble -config "$d/pebble.json" -dnsserver "$dns"
  fi
  lab_wait_tcp 127.0.0.1 "$LAB_PEBBLE_PORT" pebble
  LAB_DIRECTORY="https://127.0.0.1:$LAB_PEBBLE_PORT/dir"
  # ca_roots serves twice: the lab CA for Pebble's HTTPS, and Pebble's issuing root (made anew
  # at every start) as the root the verification policy requires issued chains to end at.
  lab_wait_tcp 127.0.0.1 "$((LAB_PEBBLE_PORT + 1000))" "pebble management"
  cp "$d/ca.pem" "$d/roots.pem"
  curl -fsS --cacert "$d/ca.pem" "https://127.0.0.1:$((LAB_PEBBLE_PORT + 1000))/roots/0" >>"$d/roots.pem"
  LAB_CA="$d/roots.pem"
}

lab_add_a() { # host ip
  if [ -n "${LAB_BIND:-}" ]; then
    # Into the zone file lab_bind_start writes (TSIG updates may change TXT records only).
    printf '%s. A %s\n' "$1" "$2" >>"$LAB_BIND/a-records"
    return
  fi
  curl -fsS -X POST "http://127.0.0.1:$LAB_CHALL_MGMT/add-a" \
    -d "{\"host\":\"$1\",\"addresses\":[\"$2\"]}" >/dev/null
}

# DNS-01 labs run in their own network and mount namespaces: named listens only on addresses
# that are on an interface, clients that check a zone's NS set (lego, vipcert's barrier) ask
# each name server on port 53, and lego resolves the NS names through the system resolver.
# So the lab adds its BIND address to its own loopback and points its own /etc/resolv.conf at
# named, changing nothing outside. Call with the script's command line: re-runs it inside the
# namespaces once (LAB_IN_NETNS=1); inside, brings up lo and returns.
lab_netns_enter() { # command...
  if [ "${LAB_IN_NETNS:-0}" != 1 ]; then
    local as_user=()
    [ "$(id -u)" = 0 ] || as_user=(-r)
    exec unshare "${as_user[@]}" -n -m -- env LAB_IN_NETNS=1 "$@"
  fi
  ip link set lo up
}

# BIND 9 for DNS-01, in two steps around lab_config (whose lab_add_a calls fill the zone):
# lab_bind_prepare ADDRESS makes $LAB/bind and a TSIG key (tsig-keygen, hmac-sha256) and sets
# LAB_BIND, LAB_BIND_SERVER (ADDRESS:53), LAB_TSIG_NAME, LAB_TSIG_KEYFILE (the whole BIND
# `key` clause) and LAB_TSIG_SECRET_FILE (the base64 secret alone), both root-only.
# Port 53 on a lab address of its own: clients that check the zone's NS set (lego's
# propagation check, vipcert's barrier) ask each name server's address on port 53.
lab_bind_prepare() { # address
  LAB_BIND=$LAB/bind
  LAB_BIND_ADDR=$1
  LAB_BIND_SERVER=$1:53
  LAB_TSIG_NAME=vipcert-lab.
  [ "${LAB_IN_NETNS:-0}" = 1 ] || { echo "error: lab_bind_prepare outside the lab's namespaces (lab_netns_enter)" >&2; return 1; }
  ip addr add "$1/32" dev lo
  mkdir -p "$LAB_BIND"
  # This lab's resolver is its named, as a site's resolver would find the zone.
  printf 'nameserver %s\n' "$1" >"$LAB_BIND/resolv.conf"
  mount --bind "$LAB_BIND/resolv.conf" /etc/resolv.conf
  : >"$LAB_BIND/a-records"
  (
    umask 077
    tsig-keygen -a hmac-sha256 "$LAB_TSIG_NAME" >"$LAB_BIND/tsig.key"
    sed -n 's/^[[:space:]]*secret "\(.*\)";/\1/p' "$LAB_BIND/tsig.key" >"$LAB_BIND/tsig.secret"
  )
  [ -s "$LAB_BIND/tsig.secret" ] || { echo "error: no secret in $LAB_BIND/tsig.key" >&2; return 1; }
  LAB_TSIG_KEYFILE=$LAB_BIND/tsig.key
  # shellcheck disable=SC2034 # for peers that take the bare secret (bench-issue's lego, certbot)
  LAB_TSIG_SECRET_FILE=$LAB_BIND/tsig.secret
}

# Write the zone example.org (SOA, NS ns1 at the BIND address, the A records lab_add_a
# collected) and named.conf, then run named in the foreground (-g) from $LAB/bind as a lab
# process (lab_stop ends it). The TSIG key may add and delete TXT records anywhere in the
# zone (`zonesub TXT`: _acme-challenge.<name> and vipcert's probes) and nothing else.
lab_bind_start() {
  local b=$LAB_BIND
  {
    # shellcheck disable=SC2016 # $TTL is the zone file's directive
    printf '$TTL 60\n@ SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 60\n'
    printf '@ NS ns1.example.org.\nns1.example.org. A %s\n' "$LAB_BIND_ADDR"
    sort -u "$b/a-records"
  } >"$b/example.org.zone"
  cat >"$b/named.conf" <<CONF
include "$b/tsig.key";
options {
  directory "$b";
  pid-file "$b/named.pid";
  session-keyfile "$b/session.key";
  managed-keys-directory "$b";
  listen-on port 53 { $LAB_BIND_ADDR; };
  listen-on-v6 { none; };
  recursion no;
  notify no;
  allow-transfer { none; };
  dnssec-validation no;
};
controls { };
zone "example.org" {
  type primary;
  file "$b/example.org.zone";
  update-policy { grant $LAB_TSIG_NAME zonesub TXT; };
};
CONF
  named-checkconf "$b/named.conf" || return 1
  named-checkzone -q example.org "$b/example.org.zone" || { named-checkzone example.org "$b/example.org.zone" >&2; return 1; }
  lab_bg named named -g -4 -n 1 -c "$b/named.conf"
  for _ in $(seq 1 200); do
    dig +short +time=1 +tries=1 -p 53 "@$LAB_BIND_ADDR" example.org SOA 2>/dev/null | grep -q ns1 && return 0
    sleep 0.05
  done
  echo "error: named did not answer for example.org on $LAB_BIND_SERVER (see $LAB/named.log)" >&2
  return 1
}

# Write $LAB/vipcert.toml for a VIP at $NET.10 and N nodes at $NET.11.. and map their names.
lab_config() { # net nodes layout
  local net=$1 n=$2 layout=$3
  LAB_VIP=gridftp.example.org
  LAB_NODES=()
  # The site creates shared_dir once on the share; vipcert refuses a missing one (unmounted NFS).
  mkdir -p "$LAB/shared"
  lab_add_a "$LAB_VIP" "$net.10"
  {
    printf 'virtual_hostname = "%s"\nvirtual_ip = "%s"\nshared_dir = "%s"\nlayout = "%s"\n\n' \
      "$LAB_VIP" "$net.10" "$LAB/shared" "$layout"
    printf '[acme]\ndirectory = "%s"\ncontact = ["mailto:grid-admin@example.org"]\nca_roots = "%s"\nhttp_port = %s\n\n' \
      "$LAB_DIRECTORY" "$LAB_CA" "$LAB_HTTP_PORT"
    for i in $(seq 1 "$n"); do
      printf '[[node]]\nhostname = "dtn%s.example.org"\naddress = "%s.%s"\n\n' "$i" "$net" $((10 + i))
    done
    printf '[serve]\nlisten = ["0.0.0.0:%s"]\nwatch_interval = "%s"\n\n[preflight]\nresolver = "%s"\n\n[install]\nroot = "%s/root"\n' \
      "$LAB_HTTP_PORT" "${LAB_WATCH_INTERVAL:-30s}" "${LAB_BIND_SERVER:-127.0.0.1:$LAB_DNS_PORT}" "$LAB"
    if [ -n "${LAB_BIND:-}" ]; then lab_config_dns01; fi
  } >"$LAB/vipcert.toml"
  for i in $(seq 1 "$n"); do
    LAB_NODES+=("dtn$i.example.org")
    lab_add_a "dtn$i.example.org" "$net.$((10 + i))"
  done
  LAB_NET=$net
}

# The DNS-01 sections: every name by RFC 2136 updates to the lab's named, signed with its
# TSIG key (the whole BIND key file, as tsig-keygen wrote it).
lab_config_dns01() {
  printf '\n[challenge]\ntype = "dns-01"\n\n[challenge.dns]\nmethod = "rfc2136"\nserver = "%s"\n' "$LAB_BIND_SERVER"
  printf 'tsig_key_name = "%s"\ntsig_algorithm = "hmac-sha256"\ntsig_secret_file = "%s"\nzone = "example.org"\npropagation_timeout = "%s"\n' \
    "$LAB_TSIG_NAME" "$LAB_TSIG_KEYFILE" "${LAB_PROPAGATION_TIMEOUT:-30s}"
}

# The config node $1 runs with: with LAB_NFS_CACHE, its own (shared_dir = its caching view),
# else the common one.
lab_node_config() {
  if [ -n "${LAB_NFS_CACHE:-}" ]; then echo "$LAB/vipcert-$1.toml"; else echo "$LAB/vipcert.toml"; fi
}

# With LAB_NFS_CACHE=N: per node, a bindfs view of $LAB/shared with the kernel's attribute,
# entry and negative-lookup caches at N seconds (what an NFS client with actimeo=N does to
# other hosts' writes), and that node's config pointing at it. Unmounted by lab_stop.
lab_views_start() {
  [ -e /dev/fuse ] || { echo "error: --nfs-like needs FUSE (/dev/fuse is missing)" >&2; return 1; }
  local n=$LAB_NFS_CACHE
  mkdir -p "$LAB/shared"
  for node in "${LAB_NODES[@]}"; do
    mkdir -p "$LAB/views/$node"
    bindfs -o "attr_timeout=$n,entry_timeout=$n,negative_timeout=$n" "$LAB/shared" "$LAB/views/$node"
    echo "$LAB/views/$node" >>"$LAB/mounts"
    sed "s|^shared_dir = .*|shared_dir = \"$LAB/views/$node\"|" "$LAB/vipcert.toml" >"$LAB/vipcert-$node.toml"
  done
}

# One `vipcert serve` per node and one on the VIP. Needs $VIPCERT (the binary). With
# LAB_WATCH=1 each node server also installs new certificates into $LAB/root-<node>.
lab_nodes_start() {
  local watch=()
  [ "${LAB_WATCH:-0}" = 1 ] && watch=(--watch)
  local i=0
  for node in "${LAB_NODES[@]}"; do
    i=$((i + 1))
    lab_bg "serve-$node" "$VIPCERT" serve "${watch[@]}" --config "$(lab_node_config "$node")" --node "$node" \
      --root "$LAB/root-$node" --listen "$LAB_NET.$((10 + i)):$LAB_HTTP_PORT"
  done
  lab_bg serve-vip "$VIPCERT" serve --config "$(lab_node_config "${LAB_NODES[0]}")" --node "${LAB_NODES[0]}" \
    --listen "$LAB_NET.10:$LAB_HTTP_PORT"
  i=0
  for _ in "${LAB_NODES[@]}"; do
    i=$((i + 1))
    lab_wait_tcp "$LAB_NET.$((10 + i))" "$LAB_HTTP_PORT" "vipcert serve"
  done
  lab_wait_tcp "$LAB_NET.10" "$LAB_HTTP_PORT" "vipcert serve (VIP)"
}

lab_stop() {
  if [ -f "$LAB/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$LAB/pids"
    while read -r pid; do wait "$pid" 2>/dev/null || true; done <"$LAB/pids"
    rm -f "$LAB/pids"
  fi
  # Views last: nothing may still be inside them. A busy one is detached, never left mounted.
  if [ -f "$LAB/mounts" ]; then
    while read -r m; do fusermount -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <"$LAB/mounts"
    rm -f "$LAB/mounts"
  fi
}
