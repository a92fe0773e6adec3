#!/usr/bin/env bash
# One idempotent set-up from nothing on Debian 12 (amd64), as root: system packages, kernel headers
# for BCC, the venv with the project and its dev extra. Safe to run again; skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "setup must run as root (BPF, netlink and apt need it)" >&2; exit 1; }

# BCC and the tools the data plane uses; then what the lab runs: servers (nginx) and clients (curl, wrk).
APT_PACKAGES=(python3-bpfcc python3-venv python3-pip iproute2 ethtool nftables tcpdump make
	nginx-light curl wrk haproxy keepalived)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
  for svc in nginx haproxy keepalived; do
    if [[ " ${missing[*]} " == *" $svc"* ]] && command -v systemctl >/dev/null; then
      say "disabling the system $svc service: the lab, the tests and the benchmarks run their own, in namespaces"
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi
# The Vagrant lab is only validated here (VMs do not boot on this kind of machine); without the
# recommends, vagrant-libvirt does not pull in a hypervisor and a kernel.
if [ -z "${XDPLB_NO_VAGRANT:-}" ] && { ! command -v vagrant >/dev/null || ! dpkg-query -W vagrant-libvirt >/dev/null 2>&1; }; then
  say "installing vagrant and vagrant-libvirt (to validate vagrant/Vagrantfile)"
  if [ "$apt_updated" = 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends vagrant vagrant-libvirt >/dev/null
fi

# BCC compiles at load time and needs the running kernel's headers. This kernel may have none
# packaged: Debian's generic headers work for XDP (only UAPI headers are used), so link them.
KREL=$(uname -r)
MODDIR=/lib/modules/$KREL
if [ ! -e "$MODDIR/build/include" ]; then
  if apt-cache show "linux-headers-$KREL" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt_updated=1; apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; }; then
    say "installing kernel headers linux-headers-$KREL"
    apt_install "linux-headers-$KREL"
  else
    say "no headers packaged for kernel $KREL: installing Debian's generic linux-headers-amd64 and linking them under $MODDIR (XDP programs only need the UAPI headers)"
    apt_install linux-headers-amd64
    # Debian splits them: the arch tree (generated headers) and the common tree (the sources).
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1)
    common=${hdr%-amd64}-common
    mkdir -p "$MODDIR"
    ln -sfn "$hdr" "$MODDIR/build"
    ln -sfn "$common" "$MODDIR/source"
    say "linked $MODDIR/build -> $hdr and $MODDIR/source -> $common"
  fi
fi

mountpoint -q /sys/fs/bpf || { say "mounting bpffs on /sys/fs/bpf"; mount -t bpf bpf /sys/fs/bpf; }

# The venv sees the system site-packages so Debian's BCC (python3-bpfcc) imports.
if [ ! -x .venv/bin/python ]; then
  say "creating the venv in .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.xdplb-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing xdplb and its dev extra into the venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
.venv/bin/python -c 'import bcc' || { echo "BCC does not import in the venv" >&2; exit 1; }
say "ready"
