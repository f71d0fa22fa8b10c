#!/usr/bin/env bash
# Builds the root filesystem of the image deploy/compose.yaml runs (PostgreSQL, the server and
# the agents all use it), from Debian packages only: the dependency closure of the packages
# below is fetched with `apt-get download` (kept in a cache folder between builds) and unpacked
# with `dpkg-deb -x`, then the `pipe` binary is copied in. No registry, no base image.
#
#   deploy/image/build-rootfs.sh PIPE_BINARY        writes deploy/image/rootfs.tar
#
# Environment: PIPE_DEB_CACHE (default /var/cache/pipe-compose-debs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pipe_bin="${1:?usage: build-rootfs.sh PIPE_BINARY}"
cache="${PIPE_DEB_CACHE:-/var/cache/pipe-compose-debs}"
out="$here/rootfs.tar"

# What the three services need: a shell and core tools for `run:` steps, git for checkouts,
# and PostgreSQL's server binaries.
roots=(libc6 libgcc-s1 dash bash coreutils findutils grep sed git postgresql-15)
# Dependencies never used here (maintainer-script machinery, Perl, locales, the client tools,
# documentation helpers); leaving them out keeps the image small.
exclude='^(debconf|cdebconf|perl|perl-base|perl-modules-.*|libperl.*|postgresql-common|postgresql-client-.*|postgresql-client-common|locales|locales-all|ssl-cert|adduser|lsb-base|sensible-utils|ucf|init-system-helpers|passwd|login|libpam-.*|git-man|liberror-perl|lib.*-perl|usrmerge|openssh-client|less|xz-utils|patch|ca-certificates|openssl)$'

closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${roots[@]}" \
          | grep -E '^[a-z0-9]' | grep -v ':' | sort -u | grep -Ev "$exclude")

mkdir -p "$cache"
(
  cd "$cache"
  missing=()
  for p in $closure; do
    ls "${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get download -qq "${missing[@]}" >/dev/null
  fi
)

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
for p in $closure; do
  deb=$(ls "$cache/${p}"_*.deb | sort -V | tail -n 1)
  dpkg-deb -x "$deb" "$root"
done

# What the packages' maintainer scripts would have done, as far as these services need it.
ln -sf dash "$root/bin/sh"
mkdir -p "$root/etc" "$root/tmp" "$root/root" "$root/work" "$root/var/lib/postgresql/data" \
         "$root/var/run/postgresql" "$root/shared" "$root/usr/local/bin"
chmod 1777 "$root/tmp"
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/bash
postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh
pipe:x:1000:1000:pipe:/work:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
cat > "$root/etc/group" <<'G'
root:x:0:
postgres:x:999:
pipe:x:1000:
nogroup:x:65534:
G
echo 'include /etc/ld.so.conf.d/*.conf' > "$root/etc/ld.so.conf"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql"
chown 1000:1000 "$root/work" "$root/shared"
chmod 0700 "$root/var/lib/postgresql/data"
ln -sf /usr/lib/postgresql/15/bin/initdb "$root/usr/local/bin/initdb"
ln -sf /usr/lib/postgresql/15/bin/postgres "$root/usr/local/bin/postgres"
# The binary without its debug sections (a debug build is mostly DWARF).
objcopy --strip-debug "$pipe_bin" "$root/usr/local/bin/pipe" 2>/dev/null || cp "$pipe_bin" "$root/usr/local/bin/pipe"
chmod 0755 "$root/usr/local/bin/pipe"
install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/entrypoint"
ldconfig -r "$root" 2>/dev/null || true
# Every shared library the binaries need must be in the image.
if chroot "$root" /usr/local/bin/pipe --version >/dev/null 2>&1; then :; else
  echo "build-rootfs: \`pipe\` does not start inside the rootfs" >&2
  chroot "$root" /usr/local/bin/pipe --version || true
  exit 1
fi
tar -C "$root" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "wrote $out ($(du -h "$out" | cut -f1))" >&2
