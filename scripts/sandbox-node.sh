#!/usr/bin/env bash
# A disposable Ubuntu-like node for the sandbox: it stands in for the EC2 instance.
#
# A Debian 12 (bookworm) minbase tree with systemd, sshd, sudo and python3, booted with systemd-nspawn on
# host networking. sshd listens on 127.0.0.2:2222 only; user `ubuntu` (uid 1000) has passwordless sudo and
# logs in with a key kept under .cache/node/ssh/. Every `up` restores a fresh tree from the cached image.
#
#   scripts/sandbox-node.sh build       build .cache/node/image-<hash>.tar.zst unless it is already there
#   scripts/sandbox-node.sh up          boot the node and its workers (builds the image first if needed); no-op
#                                       for those already running
#   scripts/sandbox-node.sh down        stop the node and every worker; remove their trees; keeps the image and key
#   scripts/sandbox-node.sh status      print running/stopped (a line per worker); exit 0 running, 3 stopped,
#                                       1 running but no sshd (or a worker down)
#   scripts/sandbox-node.sh ssh [--worker I] [CMD]   ssh into the node (or worker I) as ubuntu
#
# Workers (Dask scale-out): FRAUD_DEMO_NODES=N (1) boots the node plus N-1 worker nodes from the same image.
# Worker i of a node at 127.0.0.X listens on 127.0.X.i, same SSH port and key; machine fraud-demo-worker-i,
# state .sandbox/worker-i/. A worker that fails to boot stops everything this `up` started.
#
# Environment: FRAUD_DEMO_NODE_ADDR (127.0.0.2), FRAUD_DEMO_NODE_PORT (2222), FRAUD_DEMO_NODES (1),
#              FRAUD_DEMO_NODE_BOOT_TIMEOUT (30 s), FRAUD_DEMO_NODE_STOP_TIMEOUT (15 s),
#              FRAUD_DEMO_NODE_TMPFS (unset; e.g. 8G: keep the node's tree in a tmpfs of that size, in RAM),
#              FRAUD_DEMO_NODE_PIP_CACHE (.cache/node-pip; empty: none): a host directory bind-mounted into every
#              node for the job user's pip: a wheelhouse of the pinned requirements (files/requirements-*.txt,
#              fetched on the host when they change) that replaces the index when complete, and pip's cache.
# After `up`, .sandbox/node/env and .sandbox/node/ssh_config describe how to reach the node.
# build/up/down need root (debootstrap, systemd-nspawn). Apart from what systemd-nspawn and debootstrap do
# themselves, nothing outside the repository is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
# Run EXIT traps (build cleanup) on ^C and kill too.
trap 'exit 130' INT
trap 'exit 143' TERM

SUITE=bookworm
VARIANT=minbase
DEFAULT_MIRROR=http://deb.debian.org/debian
# What a host needs so that Ansible can configure it with apt, and no more (pip/venv come from the roles).
PACKAGES=(systemd systemd-sysv dbus openssh-server sudo python3 python3-apt ca-certificates procps iproute2)
# Units that would fight the host (shared network namespace) or race Ansible for the apt lock.
MASKED_UNITS=(
  systemd-resolved.service systemd-networkd.service systemd-networkd.socket
  systemd-networkd-wait-online.service systemd-timesyncd.service systemd-firstboot.service
  console-getty.service getty@.service serial-getty@.service
  apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
  fstrim.timer e2scrub_all.timer e2scrub_reap.service
)
# The image's hostname (part of its hash); each booted node gets its own name (select_node).
MACHINE=fraud-demo-node
# apt.conf.d snippets worth copying into the node: how to reach the archive (proxies, TLS, snapshot validity).
APT_ACQUIRE_RE='^[^#/]*(Proxy|Acquire::(https?|ftp)::|Check-Valid-Until|Check-Date)'
NODE_USER=ubuntu
NODE_UID=1000

CACHE_DIR=.cache/node
KEY=$CACHE_DIR/ssh/id_ed25519
# One lock for the node and its workers.
LOCK_DIR=.sandbox/node

NODE_ADDR=${FRAUD_DEMO_NODE_ADDR:-127.0.0.2}
NODE_PORT=${FRAUD_DEMO_NODE_PORT:-2222}
NODES=${FRAUD_DEMO_NODES:-1}
BOOT_TIMEOUT=${FRAUD_DEMO_NODE_BOOT_TIMEOUT:-30}
STOP_TIMEOUT=${FRAUD_DEMO_NODE_STOP_TIMEOUT:-15}
TMPFS_SIZE=${FRAUD_DEMO_NODE_TMPFS:-}
PIP_CACHE=${FRAUD_DEMO_NODE_PIP_CACHE-.cache/node-pip}
NODE_PIP_CACHE=/var/cache/fraud-demo-pip

# Which node the functions below act on: 0 = the node, i = worker i. Sets its name, address and state files.
select_node() {
  INDEX=$1
  if [ "$INDEX" -eq 0 ]; then
    NAME=$MACHINE LABEL=node STATE_DIR=.sandbox/node ADDR=$NODE_ADDR
  else
    NAME=fraud-demo-worker-$INDEX LABEL=worker-$INDEX STATE_DIR=.sandbox/worker-$INDEX
    ADDR=127.0.${NODE_ADDR##*.}.$INDEX
  fi
  PORT=$NODE_PORT
  ROOTFS=$STATE_DIR/rootfs
  PID_FILE=$STATE_DIR/pid
  INIT_FILE=$STATE_DIR/init
  CONSOLE_LOG=$STATE_DIR/console.log
  ENV_FILE=$STATE_DIR/env
  SSH_CONFIG=$STATE_DIR/ssh_config
}
select_node 0

# Indexes of the workers that have (or had) state under .sandbox/, whatever FRAUD_DEMO_NODES is now.
found_workers() {
  local d
  for d in .sandbox/worker-*; do
    [[ $d =~ ^\.sandbox/worker-([0-9]+)$ ]] && [ -d "$d" ] && printf '%s\n' "${BASH_REMATCH[1]}"
  done | sort -n
  return 0
}

log() { printf 'sandbox-node: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------- checks

require_root() {
  [ "$(id -u)" -eq 0 ] || die "'$1' must run as root (debootstrap and systemd-nspawn need it); try: sudo $0 $1"
}

require_tools() {
  local tool pkg missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 && continue
    case "$tool" in
      debootstrap) pkg=debootstrap ;;
      systemd-nspawn) pkg=systemd-container ;;
      zstd) pkg=zstd ;;
      ssh | ssh-keygen) pkg=openssh-client ;;
      *) pkg=$tool ;;
    esac
    missing+=("$tool (Debian package $pkg)")
  done
  [ ${#missing[@]} -eq 0 ] && return
  die "missing: ${missing[*]}; install the sandbox node's Debian packages with: scripts/setup.sh apt (as root)"
}

validate_endpoint() {
  [[ $ADDR =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "FRAUD_DEMO_NODE_ADDR=$ADDR is not an IPv4 address"
  if [ -n "$TMPFS_SIZE" ] && ! [[ $TMPFS_SIZE =~ ^[0-9]+[kKmMgG%]?$ ]]; then
    die "FRAUD_DEMO_NODE_TMPFS=$TMPFS_SIZE is not a tmpfs size such as 8G"
  fi
  if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
    die "FRAUD_DEMO_NODE_PORT=$PORT is not a TCP port number"
  fi
  case "$ADDR" in
    127.*) ;;
    *) log "WARNING: FRAUD_DEMO_NODE_ADDR=$ADDR is not a loopback address; the node's sshd shares the host network" ;;
  esac
  if ! [[ $NODES =~ ^[0-9]+$ ]] || [ "$NODES" -lt 1 ] || [ "$NODES" -gt 255 ]; then
    die "FRAUD_DEMO_NODES=$NODES is not a number of nodes from 1 to 255 (the node plus its workers)"
  fi
  if [ "$NODES" -gt 1 ] && ! [[ $ADDR =~ ^127\.0\.0\.([1-9][0-9]{0,2})$ && ${BASH_REMATCH[1]} -le 255 ]]; then
    die "FRAUD_DEMO_NODES=$NODES needs the node on 127.0.0.X (its workers use 127.0.X.i); FRAUD_DEMO_NODE_ADDR=$ADDR"
  fi
}

# Serialise build/up/down. The lock fd is closed for the node itself (see boot_node).
take_lock() {
  mkdir -p "$LOCK_DIR"
  exec 9>"$LOCK_DIR/lock"
  flock -w 300 9 || die "another sandbox-node.sh is still running (lock $LOCK_DIR/lock)"
}

# ------------------------------------------------------------------------------------------ image inputs

# The Debian mirror this machine's apt uses for $SUITE (one-line or deb822 sources), else Debian's own.
apt_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -f "$f" ] || continue
    case "$f" in
      *.list)
        uri=$(awk -v suite="$SUITE" '
          $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                        if ($(i + 1) == suite) { print $i; exit } }' "$f") ;;
      *.sources)
        uri=$(awk -v suite="$SUITE" '
          function flush() {
            if (!done && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" \
                && tolower(enabled) !~ /^no/) { split(uris, u, " "); print u[1]; done = 1 }
            types = suites = uris = enabled = ""
          }
          /^[[:space:]]*#/ { next }
          /^[[:space:]]*$/ { flush(); next }
          { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
            if (key == "types") types = $0; else if (key == "suites") suites = $0
            else if (key == "uris") uris = $0; else if (key == "enabled") enabled = $0 }
          END { flush() }' "$f") ;;
    esac
    [ -n "$uri" ] && break
  done
  case "$uri" in
    http://* | https://* | file:/*) printf '%s\n' "${uri%/}" ;;
    *) printf '%s\n' "$DEFAULT_MIRROR" ;;
  esac
}

# Host files copied into the image (extra CAs, pip and apt configuration); their content is hashed too.
host_inputs() {
  local f
  {
    [ -d /usr/local/share/ca-certificates ] && find /usr/local/share/ca-certificates -type f
    [ -d /etc/xdg/pip ] && find /etc/xdg/pip -type f
    for f in /etc/pip.conf /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && printf '%s\n' "$f"
    done
    grep -lE "$APT_ACQUIRE_RE" /etc/apt/apt.conf.d/* 2>/dev/null
  } | LC_ALL=C sort
  return 0
}

image_hash() {
  {
    printf '%s\n' "$SUITE" "$VARIANT" "$(apt_mirror)" "${PACKAGES[@]}" "${MASKED_UNITS[@]}" \
      "$NODE_USER" "$NODE_UID" "$MACHINE"
    declare -f prepare_tree copy_host_config write_sshd_config install_authorized_key
    host_inputs | while read -r f; do printf '%s\n' "$f"; cat "$f"; done
  } | sha256sum | cut -c1-16
}

image_path() { printf '%s/image-%s.tar.zst\n' "$CACHE_DIR" "$(image_hash)"; }

ensure_key() {
  if [ ! -f "$KEY" ] || [ ! -f "$KEY.pub" ]; then
    mkdir -p "$(dirname "$KEY")"
    chmod 0700 "$(dirname "$KEY")"
    rm -f "$KEY" "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C "fraud-demo-sandbox" -f "$KEY"
    log "created SSH key $KEY"
  fi
}

# ------------------------------------------------------------------------------------------ tree setup

write_sshd_config() {
  local tree=$1
  cat >"$tree/etc/ssh/sshd_config.d/10-fraud-demo.conf" <<EOF
# Written by scripts/sandbox-node.sh: the node shares the host's network, so listen on one address only.
ListenAddress $ADDR:$PORT
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
EOF
}

install_authorized_key() {
  local tree=$1 home=$1/home/$NODE_USER
  install -d -m 0700 -o "$NODE_UID" -g "$NODE_UID" "$home/.ssh"
  install -m 0600 -o "$NODE_UID" -g "$NODE_UID" "$KEY.pub" "$home/.ssh/authorized_keys"
}

# Extra local CAs (pip in the node must verify TLS like the host does), pip config and apt sources.
copy_host_config() {
  local tree=$1 f keyring
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$tree/usr/local/share/ca-certificates/"
    chroot "$tree" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the node tree"
  fi
  [ -f /etc/pip.conf ] && install -m 0644 /etc/pip.conf "$tree/etc/pip.conf"
  if [ -d /etc/xdg/pip ]; then
    mkdir -p "$tree/etc/xdg"
    cp -a /etc/xdg/pip "$tree/etc/xdg/"
  fi
  # Same mirrors as the host: its sources replace debootstrap's one-line sources.list.
  rm -f "$tree/etc/apt/sources.list"
  if [ -s /etc/apt/sources.list ]; then install -m 0644 /etc/apt/sources.list "$tree/etc/apt/sources.list"; fi
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    install -m 0644 "$f" "$tree/etc/apt/sources.list.d/"
    # A source signed by a keyring the tree lacks would break `apt-get update`: bring the keyring along.
    grep -ohE '(Signed-By:[[:space:]]*|signed-by=)/[^] ]+' "$f" | sed -E 's/^(Signed-By:[[:space:]]*|signed-by=)//' \
      | while read -r keyring; do
          if [ -f "$keyring" ] && [ ! -e "$tree$keyring" ]; then install -D -m 0644 "$keyring" "$tree$keyring"; fi
        done
  done
  if [ ! -s "$tree/etc/apt/sources.list" ] && ! compgen -G "$tree/etc/apt/sources.list.d/*" >/dev/null; then
    printf 'deb %s %s main\n' "$(apt_mirror)" "$SUITE" >"$tree/etc/apt/sources.list"
  fi
  # apt settings about reaching the archive (proxies, snapshot validity), not the host's cache policies.
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] || continue
    if grep -qE "$APT_ACQUIRE_RE" "$f"; then install -m 0644 "$f" "$tree/etc/apt/apt.conf.d/"; fi
  done
}

prepare_tree() {
  local tree=$1 unit
  chroot "$tree" useradd --uid "$NODE_UID" --user-group --create-home --home-dir "/home/$NODE_USER" \
    --shell /bin/bash "$NODE_USER"
  chroot "$tree" usermod -p '*' "$NODE_USER" # no password, but not locked (sshd key login works)
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$NODE_USER" >"$tree/etc/sudoers.d/$NODE_USER"
  chmod 0440 "$tree/etc/sudoers.d/$NODE_USER"
  chroot "$tree" visudo -cqf "/etc/sudoers.d/$NODE_USER"
  install_authorized_key "$tree"
  write_sshd_config "$tree"

  printf '%s\n' "$MACHINE" >"$tree/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    "$MACHINE" >"$tree/etc/hosts"
  # Empty (not missing): systemd then uses the id systemd-nspawn hands it, and does not treat it as first boot.
  : >"$tree/etc/machine-id"
  rm -f "$tree/var/lib/dbus/machine-id"
  for unit in "${MASKED_UNITS[@]}"; do ln -sfn /dev/null "$tree/etc/systemd/system/$unit"; done

  copy_host_config "$tree"

  # Ubuntu-minimal style: no man pages, docs or translations (now or from later installs). Fewer files
  # make the image smaller and each `up` faster, since the tree is restored file by file.
  mkdir -p "$tree/etc/dpkg/dpkg.cfg.d"
  cat >"$tree/etc/dpkg/dpkg.cfg.d/01-fraud-demo-minimal" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
  find "$tree/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$tree/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$tree"/usr/share/man/* "$tree"/usr/share/info/* "$tree"/usr/share/lintian/*
  find "$tree/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

  # Small image: no package lists (roles must `apt-get update` first, as on a real AMI), caches or logs.
  find "$tree/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
  rm -rf "$tree"/var/cache/apt/*.bin "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/debconf/*-old \
    "$tree"/tmp/* "$tree"/var/tmp/*
  find "$tree/var/log" -type f -exec truncate -s 0 {} +
}

# Stop the process group of a background helper still running when the script exits.
GROUP_PID=
stop_group() {
  [ -n "$GROUP_PID" ] || return 0
  kill -TERM -- "-$GROUP_PID" 2>/dev/null || return 0
  local deadline=$((SECONDS + 10))
  while kill -0 -- "-$GROUP_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  kill -KILL -- "-$GROUP_PID" 2>/dev/null || true
  wait "$GROUP_PID" 2>/dev/null || true
  GROUP_PID=
}

# Unmount whatever is mounted at or below DIR (deepest first). Returns non-zero if something stays.
unmount_below() {
  local dir mnt
  dir=$(realpath -m "$1")
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done
  ! awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

cmd_build() {
  require_root build
  require_tools debootstrap zstd ssh-keygen chroot
  take_lock
  build_locked
}

build_locked() {
  ensure_key
  local image mirror tmp start include bootstrap_pid
  image=$(image_path)
  if [ -f "$image" ]; then
    log "image up to date: $image ($(du -h "$image" | cut -f1))"
    return
  fi
  mirror=$(apt_mirror)
  start=$SECONDS
  mkdir -p "$CACHE_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now
  trap "stop_group; unmount_below '$tmp' || true; rm -rf --one-file-system '$tmp' '$image.part'" EXIT
  # Build in RAM when possible: debootstrap creates ~10k files, which is slow on some disks.
  mount -t tmpfs -o mode=0755,size=2G fraud-demo-node-build "$tmp" 2>/dev/null \
    || log "building on disk (could not mount a tmpfs at $tmp)"
  include=$(IFS=,; printf '%s' "${PACKAGES[*]}")
  log "building the node image: debootstrap --variant=$VARIANT $SUITE from $mirror (log: $CACHE_DIR/debootstrap.log)"
  # In its own process group, waited for in the background: ^C or a kill stops it and everything it started.
  setsid debootstrap --variant="$VARIANT" --include="$include" "$SUITE" "$tmp/rootfs" "$mirror" \
    </dev/null >"$CACHE_DIR/debootstrap.log" 2>&1 9>&- &
  bootstrap_pid=$!
  GROUP_PID=$bootstrap_pid
  if ! wait "$bootstrap_pid"; then
    GROUP_PID=
    tail -n 20 "$CACHE_DIR/debootstrap.log" >&2
    [ -f "$tmp/rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$tmp/rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $mirror); see the lines above"
  fi
  GROUP_PID=
  unmount_below "$tmp/rootfs" || die "debootstrap left mounts under $tmp/rootfs"
  prepare_tree "$tmp/rootfs"
  unmount_below "$tmp/rootfs" || die "mounts left under $tmp/rootfs"
  tar --numeric-owner -C "$tmp/rootfs" -cf - . | zstd -T0 -q -f -o "$image.part"
  mv -f "$image.part" "$image"
  find "$CACHE_DIR" -maxdepth 1 -name 'image-*.tar.zst' ! -path "$image" -delete
  unmount_below "$tmp" || die "cannot unmount $tmp"
  rm -rf --one-file-system "$tmp"
  trap - EXIT
  log "built $image ($(du -h "$image" | cut -f1)) in $((SECONDS - start)) s"
}

# ------------------------------------------------------------------------------------------- processes

# True if PID exists and is not a zombie (nobody may reap a detached nspawn right away).
alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

is_nspawn() {
  [[ $1 =~ ^[0-9]+$ ]] && alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = systemd-nspawn ]
}

# systemd-nspawn processes booting our rootfs: the pid file's, plus any found by command line.
nspawn_pids() {
  local abs p cmdline
  abs=$(realpath -m "$ROOTFS")
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd-nspawn ] || continue
    cmdline=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null) || continue
    if grep -qxF -- "$abs" <<<"$cmdline" || grep -qxF -- "-D$abs" <<<"$cmdline" \
       || grep -qxF -- "--directory=$abs" <<<"$cmdline"; then
      alive "$p" && printf '%s\n' "$p"
    fi
  done
  return 0
}

children_of() {
  local parent=$1 p ppid
  for p in /proc/[0-9]*; do
    ppid=$(sed -E 's/^.*\) . ([0-9]+) .*$/\1/' "$p/stat" 2>/dev/null) || continue
    [ "$ppid" = "$parent" ] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# "PID STARTTIME" of a process: identifies it even after its PID is reused.
proc_identity() {
  local rest
  rest=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$rest" ] || return 1
  printf '%s %s\n' "$1" "$(awk '{ print $20 }' <<<"$rest")"
}

# Processes of the container: everything in the PID namespace of its init (PID 1 inside), recorded by `up`
# with its start time, so a recycled PID or namespace id never points at someone else's processes.
container_pids() {
  local init p ns
  [ -f "$INIT_FILE" ] || return 0
  read -r init _ <"$INIT_FILE" || return 0
  [[ $init =~ ^[0-9]+$ ]] && alive "$init" || return 0
  [ "$(proc_identity "$init")" = "$(cat "$INIT_FILE")" ] || return 0
  ns=$(readlink "/proc/$init/ns/pid" 2>/dev/null) || return 0
  [ "$ns" != "$(readlink /proc/self/ns/pid)" ] || return 0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    alive "$p" && [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$ns" ] && printf '%s\n' "$p"
  done
  return 0
}

node_pid() {
  local pid
  if [ -f "$PID_FILE" ]; then
    pid=$(cat "$PID_FILE")
    if is_nspawn "$pid"; then
      printf '%s\n' "$pid"
      return
    fi
  fi
  nspawn_pids | head -n 1
}

# Addr/port of the running node (from its env file), for status/ssh/up when the caller's env differs.
load_running_endpoint() {
  if [ -f "$ENV_FILE" ]; then
    ADDR=$(sed -n 's/^FRAUD_DEMO_NODE_ADDR=//p' "$ENV_FILE")
    PORT=$(sed -n 's/^FRAUD_DEMO_NODE_PORT=//p' "$ENV_FILE")
  fi
}

ssh_opts() {
  SSH_OPTS=(-i "$KEY" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
            -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR -o ConnectTimeout=2)
}

ssh_ok() {
  ssh_opts
  [ -f "$KEY" ] && ssh "${SSH_OPTS[@]}" "$NODE_USER@$ADDR" true </dev/null >/dev/null 2>&1
}

port_in_use() { (exec 3<>"/dev/tcp/$ADDR/$PORT") 2>/dev/null; }

port_free() {
  if port_in_use; then
    die "something else already listens on $ADDR:$PORT ($LABEL); stop it or set FRAUD_DEMO_NODE_ADDR/FRAUD_DEMO_NODE_PORT"
  fi
}

# ------------------------------------------------------------------------------------------ up / down

stop_node() {
  local pid pids deadline abs
  abs=$(realpath -m "$ROOTFS")
  pids=$( { [ -f "$PID_FILE" ] && cat "$PID_FILE"; nspawn_pids; } | sort -u)
  for pid in $pids; do
    is_nspawn "$pid" || continue
    # nspawn turns SIGTERM into an orderly poweroff of the booted container (SIGRTMIN+4 to its PID 1).
    log "stopping $LABEL (systemd-nspawn pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if alive "$pid"; then
      log "$LABEL did not power off within ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Whatever is left inside the container (killing its PID 1 takes the whole PID namespace down;
  # nspawn killed with SIGKILL leaves its container running).
  deadline=$((SECONDS + 10))
  while pids=$(container_pids) && [ -n "$pids" ]; do
    [ $SECONDS -ge $deadline ] && die "processes of $LABEL survive SIGKILL: $(tr '\n' ' ' <<<"$pids")"
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  unmount_below "$abs" || die "cannot unmount everything under $abs (see /proc/mounts)"
  if [ -e "$ROOTFS" ]; then
    rm -rf --one-file-system "$ROOTFS" || die "cannot remove $ROOTFS"
  fi
  rm -f "$PID_FILE" "$INIT_FILE" "$ENV_FILE" "$SSH_CONFIG"
}

write_access_files() {
  local key_abs
  key_abs=$(realpath "$KEY")
  cat >"$ENV_FILE" <<EOF
FRAUD_DEMO_NODE_ADDR=$ADDR
FRAUD_DEMO_NODE_PORT=$PORT
FRAUD_DEMO_NODE_USER=$NODE_USER
FRAUD_DEMO_NODE_KEY=$key_abs
EOF
  cat >"$SSH_CONFIG" <<EOF
# Written by scripts/sandbox-node.sh up; use: ssh -F $SSH_CONFIG $NAME
Host $NAME
  HostName $ADDR
  Port $PORT
  User $NODE_USER
  IdentityFile $key_abs
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
}

# The node's pinned requirements as files on the host (pip download: what the host's Python, also 3.11 on
# glibc x86_64 like the node's, would install), refreshed only when a requirements file changed. A failure
# only costs the speed-up: the node then downloads from the index as on AWS.
fill_wheelhouse() {
  local reqs=() f stamp pip_pin ok=1
  for f in files/requirements-node.txt files/requirements-mlflow.txt; do [ -f "$f" ] && reqs+=("$f"); done
  # The pip that node_python puts into every venv.
  pip_pin=$(sed -n 's/^node_python_pip_version: *"\{0,1\}\([0-9.]*\)"\{0,1\}$/pip==\1/p' roles/node_python/defaults/main.yml)
  mkdir -p "$PIP_CACHE/wheels" "$PIP_CACHE/http"
  chown "$NODE_UID:$NODE_UID" "$PIP_CACHE/http"
  [ ${#reqs[@]} -gt 0 ] && [ -n "$pip_pin" ] || return 0
  stamp=$( { cat "${reqs[@]}"; echo "$pip_pin"; } | sha256sum | cut -c1-16)
  [ "$(cat "$PIP_CACHE/wheels/.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  rm -f "$PIP_CACHE/wheels/.stamp"
  log "filling the node's wheelhouse $PIP_CACHE/wheels from ${reqs[*]} (once per change of them)"
  : >"$PIP_CACHE/download.log"
  # One file at a time: each is a venv of its own, and their pins may differ (numpy of the jobs and of MLflow).
  # pip wheel, not download: a package published only as an sdist is built here once, so the node needs no
  # build dependencies from the index.
  for f in "${reqs[@]}" "$pip_pin"; do
    case "$f" in *.txt) set -- -r "$f" ;; *) set -- "$f" ;; esac
    .venv/bin/python -m pip wheel --quiet --disable-pip-version-check -w "$PIP_CACHE/wheels" "$@" \
      >>"$PIP_CACHE/download.log" 2>&1 || ok=0
  done
  if [ "$ok" = 1 ]; then
    printf '%s\n' "$stamp" >"$PIP_CACHE/wheels/.stamp"
  else
    log "WARNING: pip download failed (see $PIP_CACHE/download.log); the node downloads from the index"
  fi
}

boot_node() {
  local image=$1 abs pid t0 t1 deadline child
  abs=$(realpath -m "$ROOTFS")
  t0=$(date +%s.%N)
  mkdir -p "$ROOTFS"
  if [ -n "$TMPFS_SIZE" ]; then
    # Opt-in: the tree in RAM. Restores in well under a second where creating files on disk is slow.
    mount -t tmpfs -o "mode=0755,size=$TMPFS_SIZE" fraud-demo-node "$ROOTFS"
  fi
  zstd -dcq "$image" | tar --numeric-owner -xpf - -C "$ROOTFS"
  # The key, the listen address and the name may differ from those baked into the image.
  install_authorized_key "$ROOTFS"
  write_sshd_config "$ROOTFS"
  printf '%s\n' "$NAME" >"$ROOTFS/etc/hostname"
  sed -i "s/[[:space:]]$MACHINE\$/\t$NAME/" "$ROOTFS/etc/hosts"
  local bind=()
  if [ -n "$PIP_CACHE" ]; then
    # Sandbox only (the image and the AWS path have none of it): the job user's pip finds the pinned wheels
    # on the host first (find-links wins a tie with the index), so a fresh node does not fetch them again.
    fill_wheelhouse
    bind=(--bind="$(realpath "$PIP_CACHE"):$NODE_PIP_CACHE")
    install -d -m 0755 -o "$NODE_UID" -g "$NODE_UID" "$ROOTFS/home/$NODE_USER/.config" "$ROOTFS/home/$NODE_USER/.config/pip"
    # pip takes the index's copy over an equal local file, so a complete wheelhouse replaces the index.
    {
      printf '[global]\nfind-links = %s/wheels\ncache-dir = %s/http\n' "$NODE_PIP_CACHE" "$NODE_PIP_CACHE"
      if [ -s "$PIP_CACHE/wheels/.stamp" ]; then printf 'no-index = true\n'; fi
    } >"$ROOTFS/home/$NODE_USER/.config/pip/pip.conf"
    chown "$NODE_UID:$NODE_UID" "$ROOTFS/home/$NODE_USER/.config/pip/pip.conf"
  fi
  : >"$CONSOLE_LOG"
  rm -f "$PID_FILE"
  t1=$(date +%s.%N)
  # New session, stdin from /dev/null, lock fd closed: the node outlives this script and ignores ^C here.
  # shellcheck disable=SC2016 # $$ and $1 belong to the inner bash
  setsid --fork bash -c 'echo $$ >"$1"; shift; exec "$@"' sandbox-node "$PID_FILE" \
    systemd-nspawn --boot --register=no --keep-unit --link-journal=no --resolv-conf=replace-host \
    --console=read-only --machine="$NAME" "${bind[@]}" -D "$abs" \
    </dev/null >>"$CONSOLE_LOG" 2>&1 9>&-
  deadline=$((SECONDS + 5))
  until [ -s "$PID_FILE" ]; do
    [ $SECONDS -lt $deadline ] || die "systemd-nspawn did not start; see $CONSOLE_LOG"
    sleep 0.05
  done
  pid=$(cat "$PID_FILE")
  log "booting $NAME (systemd-nspawn pid $pid, console $CONSOLE_LOG)"
  deadline=$((SECONDS + BOOT_TIMEOUT))
  until ssh_ok; do
    if ! alive "$pid"; then
      tail -n 30 "$CONSOLE_LOG" >&2
      stop_node
      die "$LABEL exited during boot; its console is above (full log: $CONSOLE_LOG)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$CONSOLE_LOG" >&2
      stop_node
      die "sshd on $ADDR:$PORT did not answer within ${BOOT_TIMEOUT}s; $LABEL stopped (console above)"
    fi
    sleep 0.2
  done
  child=$(children_of "$pid" | head -n 1)
  if [ -n "$child" ]; then proc_identity "$child" >"$INIT_FILE"; fi
  write_access_files
  log "$LABEL up in $(awk -v a="$t0" -v b="$t1" -v c="$(date +%s.%N)" 'BEGIN { printf "%.1f s (restore %.1f s, boot %.1f s)", c - a, b - a, c - b }'): ssh -F $SSH_CONFIG $NAME  (or: $0 ssh$(worker_flag))"
}

# " --worker I" for a worker, nothing for the node: how to name it to `ssh`.
worker_flag() { [ "$INDEX" -eq 0 ] || printf ' --worker %s' "$INDEX"; }

# Boot the selected node unless it already runs; BOOTED lists the nodes this `up` booted.
up_one() {
  local pid want_addr=$ADDR want_port=$PORT
  pid=$(node_pid)
  if [ -n "$pid" ]; then
    load_running_endpoint
    if ssh_ok; then
      [ "$want_addr:$want_port" = "$ADDR:$PORT" ] \
        || log "WARNING: $LABEL listens on $ADDR:$PORT, not $want_addr:$want_port; run '$0 down' first to change it"
      echo "$LABEL already running (pid $pid, ssh $NODE_USER@$ADDR -p $PORT)"
      return 0
    fi
    log "$LABEL process $pid is alive but sshd on $ADDR:$PORT does not answer; restarting it"
  elif [ -e "$PID_FILE" ] || [ -e "$ROOTFS" ]; then
    log "cleaning up after a $LABEL that is gone (stale $PID_FILE / $ROOTFS)"
  fi
  stop_node
  ADDR=$want_addr PORT=$want_port
  port_free
  BOOTED+=("$INDEX")
  boot_node "$IMAGE"
}

# On a failed `up`: stop the nodes it booted, so nothing is left half up.
BOOTED=()
stop_booted() {
  local i stopped=()
  [ ${#BOOTED[@]} -gt 0 ] || return 0
  for ((i = ${#BOOTED[@]} - 1; i >= 0; i--)); do
    select_node "${BOOTED[i]}"
    (stop_node) || true
    stopped+=("$LABEL")
  done
  log "'up' failed: stopped what it had started (${stopped[*]})"
}

cmd_up() {
  require_root up
  require_tools systemd-nspawn zstd ssh ssh-keygen
  validate_endpoint
  take_lock
  IMAGE=$(image_path)
  if [ ! -f "$IMAGE" ]; then
    require_tools debootstrap chroot
    log "no cached node image ($IMAGE); building it first"
    build_locked
  fi
  ensure_key
  local i
  # Every address free before anything boots (a node already running holds its own).
  for ((i = 0; i < NODES; i++)); do
    select_node "$i"
    [ -n "$(node_pid)" ] || port_free
  done
  trap stop_booted EXIT
  for ((i = 0; i < NODES; i++)); do
    select_node "$i"
    up_one
  done
  trap - EXIT
  for i in $(found_workers); do
    select_node "$i"
    if [ "$i" -ge "$NODES" ] && [ -n "$(node_pid)" ]; then
      log "WARNING: $LABEL is running beyond FRAUD_DEMO_NODES=$NODES; it stays until '$0 down'"
    fi
  done
}

# Stop the selected node if anything of it is left. Returns 1 when there was nothing to stop.
down_one() {
  if [ -z "$(node_pid)" ] && [ ! -e "$ROOTFS" ] && [ ! -e "$PID_FILE" ] && [ -z "$(container_pids)" ]; then
    rm -f "$ENV_FILE" "$SSH_CONFIG" "$INIT_FILE"
    return 1
  fi
  local start=$SECONDS
  stop_node
  log "$LABEL stopped and removed in $((SECONDS - start)) s (image and key kept under $CACHE_DIR)"
}

cmd_down() {
  require_root down
  take_lock
  local i
  # Workers first: none is left without its node.
  for i in $(found_workers); do
    select_node "$i"
    down_one || true
  done
  select_node 0
  down_one || log "node not running"
}

# One node's state: prints a line and returns 0 running, 3 stopped, 1 running without sshd or leftovers.
status_one() {
  local pid
  pid=$(node_pid)
  if [ -z "$pid" ]; then
    if [ -n "$(container_pids)" ]; then
      echo "stopped, but processes of $LABEL are left (systemd-nspawn was killed); run: $0 down"
      return 1
    fi
    echo "stopped"
    return 3
  fi
  load_running_endpoint
  if ssh_ok; then
    echo "running (pid $pid, ssh $NODE_USER@$ADDR -p $PORT)"
    return 0
  fi
  echo "running but sshd on $ADDR:$PORT does not answer (pid $pid; console $CONSOLE_LOG)"
  return 1
}

# The node's line as before; then a line for each worker that has state, unless it is cleanly stopped.
cmd_status() {
  local rc=0 one i line
  line=$(status_one) || rc=$?
  echo "$line"
  for i in $(found_workers); do
    select_node "$i"
    one=0
    line=$(status_one) || one=$?
    [ "$one" -eq 3 ] && continue
    echo "$LABEL: $line"
    if [ "$one" -ne 0 ] || [ "$rc" -ne 0 ]; then rc=1; fi
  done
  exit "$rc"
}

cmd_ssh() {
  if [ "${1:-}" = --worker ]; then
    [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--worker takes a worker number (1, 2, ...)"
    select_node "$2"
    shift 2
  fi
  [ -n "$(node_pid)" ] || die "$LABEL is not running; start it with: $0 up"
  load_running_endpoint
  ssh_opts
  exec ssh "${SSH_OPTS[@]}" "$NODE_USER@$ADDR" "$@"
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  ssh) shift; cmd_ssh "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
