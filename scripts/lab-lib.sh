# shellcheck shell=bash
# Loopback lab helpers shared by scripts/lab and the benchmarks: a Pebble CA with
# pebble-challtestsrv as its DNS, a VIP and N nodes on 127.x addresses, each served by
# `vipcert serve`. Source this file; every process started is recorded in $LAB/pids and
# stopped by lab_stop.

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
  lab_bg challtestsrv pebble-challtestsrv -dns01 "127.0.0.1:$LAB_DNS_PORT" -management "127.0.0.1:$LAB_CHALL_MGMT" \
    -defaultIPv6 "" -http01 "" -https01 "" -tlsalpn01 ""
  lab_wait_tcp 127.0.0.1 "$LAB_CHALL_MGMT" pebble-challtestsrv
  if [ "${LAB_SLEEP:-0}" = 1 ]; then
    # shellcheck disable=SC2086 # LAB_PEBBLE_ENV is a list of words
    lab_bg pebble env ${LAB_PEBBLE_ENV:-} pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$LAB_DNS_PORT"
  else
    # shellcheck disable=SC2086
    lab_bg pebble env PEBBLE_VA_NOSLEEP=1 ${LAB_PEBBLE_ENV:-} pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$LAB_DNS_PORT"
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
  curl -fsS -X POST "http://127.0.0.1:$LAB_CHALL_MGMT/add-a" \
    -d "{\"host\":\"$1\",\"addresses\":[\"$2\"]}" >/dev/null
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
    printf '[serve]\nlisten = ["0.0.0.0:%s"]\nwatch_interval = "%s"\n\n[preflight]\nresolver = "127.0.0.1:%s"\n\n[install]\nroot = "%s/root"\n' \
      "$LAB_HTTP_PORT" "${LAB_WATCH_INTERVAL:-30s}" "$LAB_DNS_PORT" "$LAB"
  } >"$LAB/vipcert.toml"
  for i in $(seq 1 "$n"); do
    LAB_NODES+=("dtn$i.example.org")
    lab_add_a "dtn$i.example.org" "$net.$((10 + i))"
  done
  LAB_NET=$net
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
